import ContextModel

extension Operations {
    /// `auth`: proves the connection holds a key of the server's keys file; every later request
    /// on the connection runs with that key's role and users.
    public enum Auth: WireOperation {
        public struct Answer: Sendable, Equatable {
            /// The key's name (never its secret).
            public var key: String
            /// `admin`, `app` or `read`.
            public var role: String

            public init(key: String, role: String) {
                self.key = key
                self.role = role
            }
        }

        public static let name = "auth"
        public static let requestFields = [FieldSpec("secret", .string, required: true, "a key's secret")]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ secret: String, to writer: inout JSONWriter) {
            writer.field("secret")
            writer.string(secret)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> String {
            try request.requireKnownFields(fields)
            return try request.required("secret", as: "string", \.stringValue)
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("key")
            writer.string(answer.key)
            writer.field("role")
            writer.string(answer.role)
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                key: try answer.required("key", as: "string", \.stringValue),
                role: try answer.required("role", as: "string", \.stringValue))
        }
    }
}
