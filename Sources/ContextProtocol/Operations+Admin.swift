import ContextModel

/// A key of the server's keys file as an admin is shown it: never its secret.
public struct KeySummary: Sendable, Equatable {
    public var name: String
    public var role: String
    /// Exact users and prefixes ending in `*`.
    public var users: [String]
    /// Its rate: tokens a second and the bucket's size; nil: no limit.
    public var perSecond: Double?
    public var burst: Double?

    public init(name: String, role: String, users: [String], perSecond: Double? = nil, burst: Double? = nil) {
        self.name = name
        self.role = role
        self.users = users
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// A request that took longer than the server's slow-request threshold (`serve --slow-ms`).
public struct SlowRequest: Sendable, Equatable {
    /// When it finished, in milliseconds since 1970.
    public var at: Int64
    public var op: String
    /// The name of the key it was sent with; nil without keys.
    public var key: String?
    public var milliseconds: Double
    /// `ok` or the error code it was answered with.
    public var outcome: String
    /// `tcp` or `http`.
    public var door: String

    public init(at: Int64, op: String, key: String?, milliseconds: Double, outcome: String, door: String) {
        self.at = at
        self.op = op
        self.key = key
        self.milliseconds = milliseconds
        self.outcome = outcome
        self.door = door
    }
}

extension Operations {
    /// `keys`: the server's keys, by name, with roles, users and rates, never their secrets
    /// (admin only); `enabled` false on a server without keys.
    public enum Keys: WireOperation {
        public struct Answer: Sendable, Equatable {
            public var enabled: Bool
            public var keys: [KeySummary]

            public init(enabled: Bool, keys: [KeySummary]) {
                self.enabled = enabled
                self.keys = keys
            }
        }

        public static let name = "keys"
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("enabled")
            writer.bool(answer.enabled)
            writer.field("keys")
            writer.array(count: answer.keys.count) { writer, i in
                let key = answer.keys[i]
                writer.raw("{\"name\":")
                writer.string(key.name)
                writer.field("role")
                writer.string(key.role)
                writer.field("users")
                writer.array(count: key.users.count) { $0.string(key.users[$1]) }
                writer.field("rate")
                if let perSecond = key.perSecond, let burst = key.burst {
                    writer.raw("{\"per_second\":")
                    writer.number(perSecond)
                    writer.field("burst")
                    writer.number(burst)
                    writer.raw(UInt8(ascii: "}"))
                } else {
                    writer.null()
                }
                writer.raw(UInt8(ascii: "}"))
            }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                enabled: try answer.optionalBool("enabled") ?? false,
                keys: try answer.objects("keys").map { (key) throws(ProtocolError) in
                    let rate = key["rate"]?.objectValue
                    return KeySummary(
                        name: try key.required("name", as: "string", \.stringValue),
                        role: try key.required("role", as: "string", \.stringValue),
                        users: try key.strings("users"),
                        perSecond: rate?["per_second"]?.numberValue, burst: rate?["burst"]?.numberValue)
                })
        }
    }

    /// `slow_requests`: the latest requests that took longer than the server's threshold,
    /// newest first (admin only): op, key name, time and outcome, never a request's content.
    public enum SlowRequests: WireOperation {
        public struct Answer: Sendable, Equatable {
            /// The threshold in milliseconds; nil: slow requests are not kept.
            public var thresholdMilliseconds: Int64?
            public var requests: [SlowRequest]

            public init(thresholdMilliseconds: Int64?, requests: [SlowRequest]) {
                self.thresholdMilliseconds = thresholdMilliseconds
                self.requests = requests
            }
        }

        /// How many slow requests the server keeps (the oldest go first).
        public static let kept = 256

        public static let name = "slow_requests"
        public static let requestFields = [
            FieldSpec("limit", .integer, minimum: 1, maximum: Double(kept), default: "50", "requests at most")
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ limit: Int, to writer: inout JSONWriter) {
            writer.field("limit")
            writer.int(Int64(limit))
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Int {
            try request.requireKnownFields(fields)
            return try request.limit(default: 50, maximum: kept)
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("threshold_ms")
            if let threshold = answer.thresholdMilliseconds { writer.int(threshold) } else { writer.null() }
            writer.field("requests")
            writer.array(count: answer.requests.count) { writer, i in
                let request = answer.requests[i]
                writer.raw("{\"at\":")
                writer.int(request.at)
                writer.field("op")
                writer.string(request.op)
                writer.field("key")
                if let key = request.key { writer.string(key) } else { writer.null() }
                writer.field("ms")
                writer.number(request.milliseconds)
                writer.field("outcome")
                writer.string(request.outcome)
                writer.field("door")
                writer.string(request.door)
                writer.raw(UInt8(ascii: "}"))
            }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                thresholdMilliseconds: try answer.optionalInt("threshold_ms"),
                requests: try answer.objects("requests").map { (request) throws(ProtocolError) in
                    SlowRequest(
                        at: try request.required("at", as: "integer", \.integerValue),
                        op: try request.required("op", as: "string", \.stringValue),
                        key: try request.optionalString("key"),
                        milliseconds: try request.required("ms", as: "number", \.numberValue),
                        outcome: try request.required("outcome", as: "string", \.stringValue),
                        door: try request.required("door", as: "string", \.stringValue))
                })
        }
    }
}

extension Operations {
    /// `check`: every user's memories agree in every place they live (rows, keyword index,
    /// vector indexes, graph, records), and no row is left without its memory (admin only).
    public enum Check: WireOperation {
        public struct Answer: Sendable, Equatable {
            public var users: Int
            public var memories: Int
            public var problems: [String]

            public init(users: Int, memories: Int, problems: [String]) {
                self.users = users
                self.memories = memories
                self.problems = problems
            }
        }

        public static let name = "check"
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("users")
            writer.int(Int64(answer.users))
            writer.field("memories")
            writer.int(Int64(answer.memories))
            writer.field("problems")
            writer.array(count: answer.problems.count) { $0.string(answer.problems[$1]) }
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                users: Int(try answer.required("users", as: "integer", \.integerValue)),
                memories: Int(try answer.required("memories", as: "integer", \.integerValue)),
                problems: try answer.strings("problems"))
        }
    }
}
