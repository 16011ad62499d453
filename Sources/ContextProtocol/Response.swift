import ContextModel

/// The protocol's version number, reported by `hello`.
public let protocolVersion = 1

/// Encodes response lines: `{"ok":true,"rid":...,...}\n` or
/// `{"ok":false,"rid":...,"error":{"code":"...","message":"..."}}\n`.
public enum Response {
    /// A success line; `body` appends the op's fields with `JSONWriter.field(_:)`.
    public static func success(rid: JSONValue?, _ body: (inout JSONWriter) -> Void = { _ in }) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"ok\":true")
        if let rid {
            writer.field("rid")
            writer.value(rid)
        }
        body(&writer)
        writer.raw("}\n")
        return writer.bytes
    }

    /// A failure line.
    public static func failure(rid: JSONValue?, _ error: ProtocolError) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"ok\":false")
        if let rid {
            writer.field("rid")
            writer.value(rid)
        }
        writer.field("error")
        writer.raw("{\"code\":")
        writer.string(error.code.rawValue)
        writer.raw(",\"message\":")
        writer.string(error.message)
        for (name, value) in error.details.sorted(by: { $0.key < $1.key }) {
            writer.field(name)
            writer.int(value)
        }
        writer.raw("}}\n")
        return writer.bytes
    }
}

extension JSONWriter {
    /// Writes a memory's validity fields that are set (`valid_from` absent: from `created_at`;
    /// `valid_to` absent: it still holds).
    mutating func validity(_ validity: Validity) {
        if let from = validity.from {
            field("valid_from")
            int(from)
        }
        if let to = validity.to {
            field("valid_to")
            int(to)
        }
        if let supersedes = validity.supersedes {
            field("supersedes")
            string(supersedes)
        }
        if let supersededBy = validity.supersededBy {
            field("superseded_by")
            string(supersededBy)
        }
    }

    /// Writes `as_of` or `include_superseded` for a read that is not of what holds now.
    mutating func validityView(_ view: ValidityView) {
        switch view {
        case .current: break
        case .asOf(let time):
            field("as_of")
            int(time)
        case .all:
            field("include_superseded")
            bool(true)
        }
    }

    /// Writes `now` when a request names it.
    mutating func now(_ time: Int64?) {
        guard let time else { return }
        field("now")
        int(time)
    }

    /// Writes `,"key":` inside an object that already has a field.
    public mutating func field(_ name: String) {
        raw(UInt8(ascii: ","))
        key(name)
    }

    /// Writes a memory as an object; `vector` only when the memory carries one.
    /// - Parameter more: Writes further fields (each starting with `field`) before the brace closes.
    public mutating func memory(_ memory: Memory, score: Float? = nil, more: (inout JSONWriter) -> Void = { _ in }) {
        raw("{\"id\":")
        string(memory.id)
        if let score {
            field("score")
            number(score)
        }
        field("user")
        string(memory.user)
        field("session")
        if let session = memory.session { string(session) } else { null() }
        field("role")
        if let role = memory.role { string(role.rawValue) } else { null() }
        field("speaker")
        if let speaker = memory.speaker { string(speaker) } else { null() }
        field("text")
        string(memory.text)
        field("created_at")
        int(memory.createdAt)
        field("metadata")
        // Validated and serialized by this module when it was added.
        raw(memory.metadata)
        if let expiresAt = memory.expiresAt {
            field("expires_at")
            int(expiresAt)
        }
        if !memory.validity.isOpen { validity(memory.validity) }
        if !memory.sources.isEmpty {
            field("sources")
            array(count: memory.sources.count) { $0.string(memory.sources[$1]) }
        }
        if !memory.vector.isEmpty {
            field("vector")
            vector(memory.vector)
        }
        more(&self)
        raw(UInt8(ascii: "}"))
    }
}
