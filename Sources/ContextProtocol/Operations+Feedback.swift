import ContextModel

extension Operations {
    /// `feedback`: a user said one of their memories helped (or did not); the counts are kept
    /// with the memory, and a search's `feedback_boost` weighs them.
    public enum Feedback: WireOperation {
        public struct Arguments: Sendable, Equatable {
            public var memory: MemoryRef
            public var helped: Bool

            public init(_ memory: MemoryRef, helped: Bool) {
                self.memory = memory
                self.helped = helped
            }
        }

        public struct Answer: Sendable, Equatable {
            public var helped: Int64
            public var notHelped: Int64

            public init(helped: Int64, notHelped: Int64) {
                self.helped = helped
                self.notHelped = notHelped
            }
        }

        public static let name = "feedback"
        public static let requestFields = [
            FieldSpec.user, FieldSpec.memoryID,
            FieldSpec("helped", .boolean, required: true, "whether the memory helped"),
        ]
        public static let fields = FieldSpec.names(requestFields)
        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writeRef(arguments.memory, to: &writer)
            writer.field("helped")
            writer.bool(arguments.helped)
        }
        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            guard let helped = try request.optionalBool("helped") else {
                throw ProtocolError(.missingField, "missing field 'helped'")
            }
            return Arguments(try readRef(request), helped: helped)
        }
        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("helped")
            writer.int(answer.helped)
            writer.field("not_helped")
            writer.int(answer.notHelped)
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            Answer(
                helped: try answer.required("helped", as: "integer", \.integerValue),
                notHelped: try answer.required("not_helped", as: "integer", \.integerValue))
        }
    }
}
