import ContextModel

extension Operations {
    /// `metrics`: the server's metrics in Prometheus' text format (admin only on a server with
    /// keys), as `serve --metrics-port` shows them at `/metrics`.
    public enum Metrics: WireOperation {
        public static let name = "metrics"
        public static func encode(answer text: String, to writer: inout JSONWriter) {
            writer.field("text")
            writer.string(text)
        }
        public static func decode(answer: JSONObject) throws(ProtocolError) -> String {
            try answer.required("text", as: "string", \.stringValue)
        }
    }
}
