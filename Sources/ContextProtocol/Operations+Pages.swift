import ContextModel

/// The operations a chat app reads its history with and tidies it by, so that it keeps no
/// second store: pages of memories, sessions, changes without re-embedding, and backups.
extension Operations {
    /// `list`: a user's memories in time order, filtered like `forget`, a page at a time.
    public enum List: WireOperation {
        public static let name = "list"
        public static let requestFields =
            [FieldSpec.user] + FieldSpec.filter + [
                FieldSpec("order", .choice, choices: ["asc", "desc"], default: "\"asc\"", "oldest or newest first"),
                FieldSpec(
                    "limit", .integer, minimum: 1, maximum: Double(ListRequest.maximumLimit),
                    default: String(ListRequest.defaultLimit), "memories in a page"),
                FieldSpec("cursor", .string, "where the previous page ended (its `next_cursor`)"),
                FieldSpec("with_vector", .boolean, default: "false", "return each memory's vector too"),
                FieldSpec.asOf, FieldSpec.includeSuperseded, FieldSpec.now,
            ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ request: ListRequest, to writer: inout JSONWriter) {
            writer.field("user")
            writer.string(request.user)
            writer.memoryFilter(request.filter)
            if request.newestFirst {
                writer.field("order")
                writer.string("desc")
            }
            writer.field("limit")
            writer.int(Int64(request.limit))
            if let cursor = request.cursor {
                writer.field("cursor")
                writer.string(cursor)
            }
            if request.withVector {
                writer.field("with_vector")
                writer.bool(true)
            }
            writer.validityView(request.validity)
            writer.now(request.now)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> ListRequest {
            try request.requireKnownFields(fields)
            let order = try request.optionalString("order") ?? "asc"
            guard order == "asc" || order == "desc" else {
                throw ProtocolError(.invalidValue, "'order' must be asc (oldest first) or desc, not '\(order)'")
            }
            return ListRequest(
                user: try request.user(), filter: try request.memoryFilter(), newestFirst: order == "desc",
                limit: try request.limit(default: ListRequest.defaultLimit, maximum: ListRequest.maximumLimit),
                cursor: try request.optionalString("cursor"),
                withVector: try request.optionalBool("with_vector") ?? false,
                validity: try request.validityView(allowingAll: true), now: try request.optionalTime("now"))
        }
        public static func encode(answer page: ListPage, to writer: inout JSONWriter) {
            writer.field("memories")
            writer.array(count: page.memories.count) { $0.memory(page.memories[$1]) }
            writer.field("next_cursor")
            if let cursor = page.nextCursor { writer.string(cursor) } else { writer.null() }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> ListPage {
            ListPage(memories: try answer.memories("memories"), nextCursor: try answer.optionalString("next_cursor"))
        }
    }

    /// `sessions`: a user's sessions, the latest active first, with turn counts and times.
    public enum Sessions: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var user: String
            public var limit: Int
            /// The time the read takes as now (which turns expired); nil: the server's clock.
            public var now: Int64?

            public init(user: String, limit: Int = 1000, now: Int64? = nil) {
                self.user = user
                self.limit = limit
                self.now = now
            }
        }

        public struct Answer: Sendable, Equatable {
            public var sessions: [SessionSummary]
            /// The user has more sessions than `limit`.
            public var more: Bool

            public init(sessions: [SessionSummary], more: Bool) {
                self.sessions = sessions
                self.more = more
            }
        }

        public static let name = "sessions"
        public static let requestFields = [
            FieldSpec.user,
            FieldSpec(
                "limit", .integer, minimum: 1, maximum: Double(Limits.maximumSessions), default: "1000",
                "sessions at most"),
            FieldSpec.now,
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writer.field("user")
            writer.string(arguments.user)
            writer.field("limit")
            writer.int(Int64(arguments.limit))
            writer.now(arguments.now)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            return Arguments(
                user: try request.user(), limit: try request.limit(default: 1000, maximum: Limits.maximumSessions),
                now: try request.optionalTime("now"))
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("sessions")
            writer.array(count: answer.sessions.count) { writer, i in
                let session = answer.sessions[i]
                writer.raw("{\"session\":")
                if let name = session.session { writer.string(name) } else { writer.null() }
                writer.field("turns")
                writer.int(Int64(session.turns))
                writer.field("first_at")
                writer.int(session.firstAt)
                writer.field("last_at")
                writer.int(session.lastAt)
                writer.raw(UInt8(ascii: "}"))
            }
            writer.field("more")
            writer.bool(answer.more)
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            let sessions = try answer.required("sessions", as: "array", \.arrayValue)
            return Answer(
                sessions: try sessions.map { (value) throws(ProtocolError) in
                    guard let object = value.objectValue else {
                        throw ProtocolError(.wrongType, "a session must be an object, not \(value.typeName)")
                    }
                    return SessionSummary(
                        session: try object.optionalString("session"),
                        turns: Int(try object.required("turns", as: "integer", \.integerValue)),
                        firstAt: try object.required("first_at", as: "integer", \.integerValue),
                        lastAt: try object.required("last_at", as: "integer", \.integerValue))
                }, more: try answer.optionalBool("more") ?? false)
        }
    }

    /// `users`: the users whose ids begin with `prefix`, in the byte order of their ids, with
    /// their memory counts, a page at a time (a key that covers some users sees only those).
    public enum Users: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var prefix: String
            public var limit: Int
            /// The last user of the previous page: this page begins after it.
            public var after: String?
            /// The time the read takes as now (which memories expired); nil: the server's clock.
            public var now: Int64?

            public init(prefix: String = "", limit: Int = 100, after: String? = nil, now: Int64? = nil) {
                self.prefix = prefix
                self.limit = limit
                self.after = after
                self.now = now
            }
        }

        public struct Answer: Sendable, Equatable {
            public var users: [UserSummary]
            /// Where the next page begins (`after`), nil on the last page.
            public var next: String?

            public init(users: [UserSummary], next: String?) {
                self.users = users
                self.next = next
            }
        }

        public static let name = "users"
        public static let requestFields = [
            FieldSpec("prefix", .string, default: "\"\"", "only users whose ids begin with these bytes"),
            FieldSpec(
                "limit", .integer, minimum: 1, maximum: Double(Limits.maximumUsers), default: "100", "users at most"),
            FieldSpec("after", .string, "the previous answer's `next`: the page after it"), FieldSpec.now,
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writer.field("prefix")
            writer.string(arguments.prefix)
            writer.field("limit")
            writer.int(Int64(arguments.limit))
            if let after = arguments.after {
                writer.field("after")
                writer.string(after)
            }
            writer.now(arguments.now)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            return Arguments(
                prefix: try request.optionalString("prefix") ?? "",
                limit: try request.limit(default: 100, maximum: Limits.maximumUsers),
                after: try request.optionalString("after"), now: try request.optionalTime("now"))
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("users")
            writer.array(count: answer.users.count) { writer, i in
                writer.raw("{\"user\":")
                writer.string(answer.users[i].user)
                writer.field("memories")
                writer.int(Int64(answer.users[i].memories))
                writer.raw(UInt8(ascii: "}"))
            }
            writer.field("next")
            if let next = answer.next { writer.string(next) } else { writer.null() }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            let users = try answer.required("users", as: "array", \.arrayValue)
            return Answer(
                users: try users.map { (value) throws(ProtocolError) in
                    guard let object = value.objectValue else {
                        throw ProtocolError(.wrongType, "a user must be an object, not \(value.typeName)")
                    }
                    return UserSummary(
                        user: try object.required("user", as: "string", \.stringValue),
                        memories: Int(try object.required("memories", as: "integer", \.integerValue)))
                }, next: try answer.optionalString("next"))
        }
    }

    /// `update`: changes a memory's session, role, metadata or time without re-sending (or
    /// re-embedding) its text; answers the memory as it now is.
    public enum Update: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var memory: MemoryRef
            public var changes: MemoryChanges

            public init(_ memory: MemoryRef, _ changes: MemoryChanges) {
                self.memory = memory
                self.changes = changes
            }
        }

        public static let name = "update"
        public static let requestFields = [
            FieldSpec.user, FieldSpec.memoryID, FieldSpec("session", .string, "the new session; null removes it"),
            FieldSpec("role", .choice, choices: Role.allCases.map(\.rawValue), "the new role; null removes it"),
            FieldSpec("speaker", .string, "the new speaker; null removes it"),
            FieldSpec("metadata", .object, "the new metadata, whole"),
            FieldSpec("created_at", .time, "the new time (it cannot be removed)"),
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writeRef(arguments.memory, to: &writer)
            let changes = arguments.changes
            if let session = changes.session {
                writer.field("session")
                if let session { writer.string(session) } else { writer.null() }
            }
            if let role = changes.role {
                writer.field("role")
                if let role { writer.string(role.rawValue) } else { writer.null() }
            }
            if let speaker = changes.speaker {
                writer.field("speaker")
                if let speaker { writer.string(speaker) } else { writer.null() }
            }
            if let metadata = changes.metadata {
                writer.field("metadata")
                writer.raw(metadata)
            }
            if let createdAt = changes.createdAt {
                writer.field("created_at")
                writer.int(createdAt)
            }
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            var changes = MemoryChanges()
            // Null removes a session or a role; a field left out keeps it.
            if request["session"] != nil { changes.session = .some(try request.optionalString("session")) }
            if request["role"] != nil { changes.role = .some(try request.role()) }
            if request["speaker"] != nil { changes.speaker = .some(try request.optionalString("speaker")) }
            if request["metadata"] != nil { changes.metadata = try request.metadata() }
            if request["created_at"] != nil {
                guard let createdAt = try request.optionalTime("created_at") else {
                    throw ProtocolError(.invalidValue, "'created_at' cannot be removed, only changed")
                }
                changes.createdAt = createdAt
            }
            guard !changes.isEmpty else {
                throw ProtocolError(
                    .missingField, "update changes nothing: give session, role, speaker, metadata or created_at")
            }
            return Arguments(try readRef(request), changes)
        }
        public static func encode(answer: Memory, to writer: inout JSONWriter) {
            writer.field("memory")
            writer.memory(answer)
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Memory {
            try Memory(json: try answer.required("memory", as: "object", \.objectValue))
        }
    }

    /// `backup`: a consistent copy of the space, written by the server to a new file (SQLite's
    /// online backup API) while it goes on serving, then checked.
    public enum Backup: WireOperation {
        public struct Answer: Sendable, Equatable {
            public var path: String
            public var bytes: Int64
            public var seconds: Double
            public var memories: Int

            public init(path: String, bytes: Int64, seconds: Double, memories: Int) {
                self.path = path
                self.bytes = bytes
                self.seconds = seconds
                self.memories = memories
            }
        }

        public static let name = "backup"
        public static let requestFields = [
            FieldSpec("to", .string, required: true, "a new file's name in the server's backup folder")
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ path: String, to writer: inout JSONWriter) {
            writer.field("to")
            writer.string(path)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> String {
            try request.requireKnownFields(fields)
            let path = try request.required("to", as: "string", \.stringValue)
            guard !path.isEmpty, !path.utf8.contains(0) else {
                throw ProtocolError(.invalidValue, "'to' must be a file name in the server's backup folder")
            }
            return path
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("path")
            writer.string(answer.path)
            writer.field("bytes")
            writer.int(answer.bytes)
            writer.field("seconds")
            writer.number(answer.seconds)
            writer.field("memories")
            writer.int(Int64(answer.memories))
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                path: try answer.required("path", as: "string", \.stringValue),
                bytes: try answer.required("bytes", as: "integer", \.integerValue),
                seconds: try answer.required("seconds", as: "number", \.numberValue),
                memories: Int(try answer.required("memories", as: "integer", \.integerValue)))
        }
    }
}

extension Operations {
    /// `digest`: a hash of a space's rows in order, one user's or all of them, and the index of
    /// the last write applied: two spaces that applied the same writes answer the same.
    public enum Digest: WireOperation {
        public struct Answer: Sendable, Equatable {
            /// SHA-256, hex.
            public var digest: String
            /// The index of the last write the space applied: for the whole space's digest only
            /// (a user's does not tell of other users' writes).
            public var appliedIndex: Int64?

            public init(digest: String, appliedIndex: Int64?) {
                self.digest = digest
                self.appliedIndex = appliedIndex
            }
        }

        public static let name = "digest"
        public static let requestFields = [
            FieldSpec("user", .identifier, "whose rows; the whole space's when absent (an admin's)")
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ user: String?, to writer: inout JSONWriter) {
            guard let user else { return }
            writer.field("user")
            writer.string(user)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> String? {
            try request.requireKnownFields(fields)
            return request["user"] == nil ? nil : try request.user()
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("digest")
            writer.string(answer.digest)
            if let applied = answer.appliedIndex {
                writer.field("applied_index")
                writer.int(applied)
            }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                digest: try answer.required("digest", as: "string", \.stringValue),
                appliedIndex: try answer.optionalInt("applied_index"))
        }
    }
}

extension JSONObject {
    /// `limit`: 1 to `maximum`, `default` when absent.
    func limit(default value: Int, maximum: Int) throws(ProtocolError) -> Int {
        guard let limit = try optionalInt("limit") else { return value }
        guard (1...Int64(maximum)).contains(limit) else {
            throw ProtocolError(.invalidValue, "'limit' must be between 1 and \(maximum), not \(limit)")
        }
        return Int(limit)
    }

    /// `metadata`: an object, kept as compact JSON text; null is the empty object.
    func metadata() throws(ProtocolError) -> String {
        guard let value = self["metadata"], value != .null else { return "{}" }
        guard case .object = value else {
            throw ProtocolError(.wrongType, "'metadata' must be an object, not \(value.typeName)")
        }
        guard value.isFinite else {
            throw ProtocolError(.nonFinite, "'metadata' holds NaN or Infinity, which JSON cannot carry back")
        }
        return JSONWriter.serialize(value)
    }
}

extension Operations {
    /// `export`: one user's memories, or every user's (an admin's), in the order they were stored,
    /// with every field, a page at a time; `contextstore export` writes them as JSON lines.
    public enum Export: WireOperation {
        public struct Arguments: Sendable, Equatable {
            /// Whose memories; every user's when nil.
            public var user: String?
            /// The previous page's `next`: this page begins after it.
            public var after: Int64
            public var limit: Int
            /// Each memory's vector as stored (base64 float32).
            public var withVector: Bool
            /// The largest position (a memory's `seq`, which SQLite keeps below 2^63; JSON
            /// numbers stay exact below 2^53).
            public static let maximumAfter: Int64 = 1 << 53 - 1

            public init(
                user: String? = nil, after: Int64 = 0, limit: Int = ExportPage.defaultLimit, withVector: Bool = false
            ) {
                self.user = user
                self.after = after
                self.limit = limit
                self.withVector = withVector
            }
        }

        public static let name = "export"
        public static let requestFields = [
            FieldSpec("user", .identifier, "whose memories; every user's when absent (an admin's)"),
            FieldSpec(
                "after", .integer, minimum: 0, maximum: Double(Arguments.maximumAfter), default: "0",
                "the previous answer's `next`: the page after it"),
            FieldSpec(
                "limit", .integer, minimum: 1, maximum: Double(ExportPage.maximumLimit),
                default: String(ExportPage.defaultLimit), "memories in a page"),
            FieldSpec("with_vector", .boolean, default: "false", "each memory's vector as stored, base64 float32"),
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            if let user = arguments.user {
                writer.field("user")
                writer.string(user)
            }
            writer.field("after")
            writer.int(arguments.after)
            writer.field("limit")
            writer.int(Int64(arguments.limit))
            if arguments.withVector {
                writer.field("with_vector")
                writer.bool(true)
            }
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            let after = try request.optionalInt("after") ?? 0
            guard (0...Arguments.maximumAfter).contains(after) else {
                throw ProtocolError(
                    .invalidValue, "'after' must be between 0 and \(Arguments.maximumAfter), not \(after)")
            }
            return Arguments(
                user: request["user"] == nil || request["user"] == .null ? nil : try request.user(), after: after,
                limit: try request.limit(default: ExportPage.defaultLimit, maximum: ExportPage.maximumLimit),
                withVector: try request.optionalBool("with_vector") ?? false)
        }
        public static func encode(answer page: ExportPage, to writer: inout JSONWriter) {
            writer.field("memories")
            writer.array(count: page.memories.count) { writer, i in
                writer.exported(page.memories[i])
            }
            writer.field("next")
            if let next = page.next { writer.int(next) } else { writer.null() }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> ExportPage {
            let memories = try answer.required("memories", as: "array", \.arrayValue).map {
                (value) throws(ProtocolError) in
                guard let object = value.objectValue else {
                    throw ProtocolError(.wrongType, "a memory must be an object, not \(value.typeName)")
                }
                return ExportedMemory(
                    memory: try Memory(json: object), helped: try object.optionalInt("helped") ?? 0,
                    notHelped: try object.optionalInt("not_helped") ?? 0)
            }
            return ExportPage(memories: memories, next: try answer.optionalInt("next"))
        }
    }
}

extension JSONWriter {
    /// An exported memory: the memory's object, its feedback counts when it has any, and its
    /// vector (base64 float32, as stored) when the export carries vectors. One line of
    /// `contextstore export`.
    public mutating func exported(_ exported: ExportedMemory) {
        var memory = exported.memory
        let vector = memory.vector
        memory.vector = []
        self.memory(memory) { writer in
            if exported.helped != 0 || exported.notHelped != 0 {
                writer.field("helped")
                writer.int(exported.helped)
                writer.field("not_helped")
                writer.int(exported.notHelped)
            }
            if !vector.isEmpty {
                writer.field("vector")
                writer.string(Base64.encode(vector))
            }
        }
    }
}
