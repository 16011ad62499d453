import ContextModel

/// The bytes of a command, for a log that outlives the process (a cluster's, a replay file's).
///
/// Format 3, little-endian: a format byte, a kind byte, then the kind's fields in the order the
/// enum names them. Integers are 8 bytes; counts and lengths 4; a string is its length and its
/// UTF-8 bytes exactly as given (NUL included); an optional is a 0 or 1 byte before its value;
/// a float is its bit pattern, so every vector comes back bit for bit. Format 1, which a log
/// written before may hold, lacks a memory's validity and sources (after its expiry), a
/// filter's `validAt` (after its `liveAt`), an added memory's `dedupe` (last), and the
/// `withDerived` flag of a delete and a forget (last); it is read as open, unsourced, without
/// dedupe and without derived memories. Format 2 lacks an added memory's feedback counts (last,
/// after its dedupe); it is read as counts of 0.
extension WriteCommand {
    static let format: UInt8 = 3

    public func encoded() -> [UInt8] {
        var out = CommandWriter()
        out.byte(Self.format)
        switch self {
        case .add(let add):
            out.byte(1)
            out.bool(add.ifAbsent)
            out.count(add.memories.count)
            for resolved in add.memories {
                out.memory(resolved.memory)
                out.count(resolved.windows.count)
                for window in resolved.windows { out.floats(window) }
                out.bool(resolved.timeGiven)
                out.optional(resolved.dedupe) { out, dedupe in
                    switch dedupe {
                    case .exact: out.byte(1)
                    case .near(let similarity):
                        out.byte(2)
                        out.floats([similarity])
                    }
                }
                out.int(resolved.feedback.helped)
                out.int(resolved.feedback.unhelped)
            }
        case .update(let memory, let changes, let asOf):
            out.byte(2)
            out.ref(memory)
            out.optional(changes.session) { $0.optional($1) { $0.string($1) } }
            out.optional(changes.role) { $0.optional($1) { $0.role($1) } }
            out.optional(changes.speaker) { $0.optional($1) { $0.string($1) } }
            out.optional(changes.metadata) { $0.string($1) }
            out.optional(changes.createdAt) { $0.int($1) }
            out.int(asOf)
        case .feedback(let memory, let helped, let asOf):
            out.byte(3)
            out.ref(memory)
            out.bool(helped)
            out.int(asOf)
        case .delete(let memory, let withDerived):
            out.byte(4)
            out.ref(memory)
            out.bool(withDerived)
        case .forget(let user, let filter, let asOf, let withDerived):
            out.byte(5)
            out.string(user)
            out.filter(filter)
            out.int(asOf)
            out.bool(withDerived)
        case .purge(let asOf, let limit):
            out.byte(6)
            out.int(asOf)
            out.int(Int64(limit))
        }
        return out.bytes
    }

    /// Reads what `encoded()` wrote.
    /// - Throws: `StoreError.invalidValue` naming the first thing that is not as written: an
    ///   unknown format or kind, a value out of its range, text that is not UTF-8, bytes missing
    ///   or left over.
    public init(decoding bytes: [UInt8]) throws {
        var input = CommandReader(bytes: bytes)
        input.format = try input.byte()
        guard (1...Self.format).contains(input.format) else {
            throw StoreError.invalidValue("a command of format \(input.format), not 1 to \(Self.format)")
        }
        switch try input.byte() {
        case 1:
            let ifAbsent = try input.bool()
            let memories = try input.array { input in
                let memory = try input.memory()
                let windows = try input.array { try $0.floats() }
                let timeGiven = try input.bool()
                let dedupe = input.format >= 2 ? try input.optional { try $0.dedupe() } : nil
                let feedback =
                    input.format >= 3 ? FeedbackCounts(helped: try input.int(), unhelped: try input.int()) : .zero
                return ResolvedMemory(
                    memory, windows: windows, timeGiven: timeGiven, dedupe: dedupe, feedback: feedback)
            }
            self = .add(AddCommand(memories, ifAbsent: ifAbsent))
        case 2:
            let memory = try input.ref()
            let changes = MemoryChanges(
                session: try input.optional { try $0.optional { try $0.string() } },
                role: try input.optional { try $0.optional { try $0.role() } },
                speaker: try input.optional { try $0.optional { try $0.string() } },
                metadata: try input.optional { try $0.string() }, createdAt: try input.optional { try $0.int() })
            self = .update(memory, changes, asOf: try input.int())
        case 3:
            let memory = try input.ref()
            let helped = try input.bool()
            self = .feedback(memory, helped: helped, asOf: try input.int())
        case 4:
            let memory = try input.ref()
            self = .delete(memory, withDerived: input.format >= 2 ? try input.bool() : false)
        case 5:
            let user = try input.string()
            let filter = try input.filter()
            let asOf = try input.int()
            self = .forget(user: user, filter, asOf: asOf, withDerived: input.format >= 2 ? try input.bool() : false)
        case 6:
            let asOf = try input.int()
            let limit = try input.int()
            guard limit > 0, limit <= Int64(Int32.max) else {
                throw StoreError.invalidValue("a purge's limit of \(limit)")
            }
            self = .purge(asOf: asOf, limit: Int(limit))
        case let kind:
            throw StoreError.invalidValue("a command of kind \(kind)")
        }
        guard input.isAtEnd else { throw StoreError.invalidValue("\(input.remaining) bytes after the command") }
    }
}

private struct CommandWriter {
    var bytes: [UInt8] = []

    mutating func byte(_ value: UInt8) { bytes.append(value) }
    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }
    mutating func int(_ value: Int64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func count(_ value: Int) {
        withUnsafeBytes(of: UInt32(value).littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func string(_ value: String) {
        count(value.utf8.count)
        bytes.append(contentsOf: value.utf8)
    }
    mutating func floats(_ values: [Float]) {
        count(values.count)
        for value in values {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
    }
    mutating func optional<T>(_ value: T?, _ write: (inout CommandWriter, T) -> Void) {
        guard let value else { return bool(false) }
        bool(true)
        write(&self, value)
    }
    mutating func role(_ value: Role) { string(value.rawValue) }
    mutating func ref(_ memory: MemoryRef) {
        string(memory.user)
        string(memory.id)
    }
    mutating func memory(_ memory: Memory) {
        string(memory.id)
        string(memory.user)
        optional(memory.session) { $0.string($1) }
        optional(memory.role) { $0.role($1) }
        optional(memory.speaker) { $0.string($1) }
        string(memory.text)
        int(memory.createdAt)
        string(memory.metadata)
        floats(memory.vector)
        optional(memory.expiresAt) { $0.int($1) }
        optional(memory.validity.from) { $0.int($1) }
        optional(memory.validity.to) { $0.int($1) }
        optional(memory.validity.supersedes) { $0.string($1) }
        optional(memory.validity.supersededBy) { $0.string($1) }
        count(memory.sources.count)
        for source in memory.sources { string(source) }
    }
    mutating func filter(_ filter: MemoryFilter) {
        let rows = filter.rows
        optional(rows.session) { $0.string($1) }
        optional(rows.role) { $0.role($1) }
        optional(rows.speaker) { $0.string($1) }
        optional(rows.since) { $0.int($1) }
        optional(rows.until) { $0.int($1) }
        optional(rows.liveAt) { $0.int($1) }
        optional(rows.validAt) { $0.int($1) }
        count(filter.metadata.count)
        for condition in filter.metadata {
            string(condition.key)
            switch condition.test {
            case .equals(let value):
                byte(1)
                metadata(value)
            case .oneOf(let values):
                byte(2)
                count(values.count)
                for value in values { metadata(value) }
            case .range(let greaterThan, let atLeast, let lessThan, let atMost):
                byte(3)
                for bound in [greaterThan, atLeast, lessThan, atMost] { optional(bound) { $0.metadata($1) } }
            }
        }
    }
    mutating func metadata(_ value: MetadataValue) {
        switch value {
        case .string(let text):
            byte(1)
            string(text)
        case .integer(let number):
            byte(2)
            int(number)
        case .double(let number):
            byte(3)
            int(Int64(bitPattern: number.bitPattern))
        case .bool(let flag):
            byte(4)
            bool(flag)
        case .null:
            byte(5)
        }
    }
}

private struct CommandReader {
    let bytes: [UInt8]
    var position = 0
    /// The format the command was written in (its first byte).
    var format: UInt8 = WriteCommand.format

    var remaining: Int { bytes.count - position }
    var isAtEnd: Bool { remaining == 0 }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count <= remaining else {
            throw StoreError.invalidValue("the command ends \(count - remaining) bytes early")
        }
        defer { position += count }
        return bytes[position..<position + count]
    }
    mutating func byte() throws -> UInt8 { try take(1).first! }
    mutating func bool() throws -> Bool {
        switch try byte() {
        case 0: false
        case 1: true
        case let other: throw StoreError.invalidValue("a flag of \(other), not 0 or 1")
        }
    }
    mutating func int() throws -> Int64 {
        try take(8).reversed().reduce(0) { $0 << 8 | Int64($1) }
    }
    /// A count of things that each take at least `unit` bytes: more than the bytes left could
    /// hold is refused before anything is reserved for them.
    mutating func count(unit: Int = 1) throws -> Int {
        let count = Int(try take(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        guard count <= remaining / unit else {
            throw StoreError.invalidValue("a count of \(count), more than the \(remaining) bytes left hold")
        }
        return count
    }
    mutating func string() throws -> String {
        let utf8 = try take(try count())
        guard let text = String(validating: utf8, as: UTF8.self) else {
            throw StoreError.invalidValue("text that is not UTF-8")
        }
        return text
    }
    mutating func floats() throws -> [Float] {
        let count = try count(unit: 4)
        return try (0..<count).map { _ in
            Float(bitPattern: try take(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        }
    }
    mutating func array<T>(_ read: (inout CommandReader) throws -> T) throws -> [T] {
        try (0..<(try count())).map { _ in try read(&self) }
    }
    mutating func optional<T>(_ read: (inout CommandReader) throws -> T) throws -> T? {
        try bool() ? try read(&self) : nil
    }
    mutating func role() throws -> Role {
        let name = try string()
        guard let role = Role(rawValue: name) else { throw StoreError.invalidValue("a role named '\(name)'") }
        return role
    }
    mutating func dedupe() throws -> Dedupe {
        switch try byte() {
        case 1: return .exact
        case 2:
            let similarity = try floats()
            guard similarity.count == 1 else {
                throw StoreError.invalidValue("a near dedupe of \(similarity.count) values")
            }
            return .near(similarity[0])
        case let other: throw StoreError.invalidValue("a dedupe of kind \(other)")
        }
    }
    mutating func ref() throws -> MemoryRef {
        let user = try string()
        return MemoryRef(user: user, id: try string())
    }
    mutating func memory() throws -> Memory {
        let id = try string()
        let user = try string()
        let session = try optional { try $0.string() }
        let role = try optional { try $0.role() }
        let speaker = try optional { try $0.string() }
        let text = try string()
        let createdAt = try int()
        let metadata = try string()
        let vector = try floats()
        let expiresAt = try optional { try $0.int() }
        var validity = Validity()
        var sources: [String] = []
        if format >= 2 {
            validity = Validity(
                from: try optional { try $0.int() }, to: try optional { try $0.int() },
                supersedes: try optional { try $0.string() }, supersededBy: try optional { try $0.string() })
            sources = try array { try $0.string() }
        }
        return Memory(
            id: id, user: user, session: session, role: role, speaker: speaker, text: text, createdAt: createdAt,
            metadata: metadata, vector: vector, expiresAt: expiresAt, validity: validity, sources: sources)
    }
    mutating func filter() throws -> MemoryFilter {
        var rows = RowFilter(
            session: try optional { try $0.string() }, role: try optional { try $0.role() },
            speaker: try optional { try $0.string() })
        rows.since = try optional { try $0.int() }
        rows.until = try optional { try $0.int() }
        rows.liveAt = try optional { try $0.int() }
        if format >= 2 { rows.validAt = try optional { try $0.int() } }
        let metadata = try array { input in
            let key = try input.string()
            let test: MetadataCondition.Test
            switch try input.byte() {
            case 1: test = .equals(try input.metadata())
            case 2: test = .oneOf(try input.array { try $0.metadata() })
            case 3:
                let bounds = try (0..<4).map { _ in try input.optional { try $0.metadata() } }
                test = .range(greaterThan: bounds[0], atLeast: bounds[1], lessThan: bounds[2], atMost: bounds[3])
            case let other: throw StoreError.invalidValue("a metadata test of kind \(other)")
            }
            return MetadataCondition(key: key, test: test)
        }
        return MemoryFilter(rows: rows, metadata: metadata)
    }
    mutating func metadata() throws -> MetadataValue {
        switch try byte() {
        case 1: .string(try string())
        case 2: .integer(try int())
        case 3: .double(Double(bitPattern: UInt64(bitPattern: try int())))
        case 4: .bool(try bool())
        case 5: .null
        case let other: throw StoreError.invalidValue("a metadata value of kind \(other)")
        }
    }
}
