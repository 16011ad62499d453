import ContextModel

extension Operations {
    /// `cluster`: what a cluster node knows of its cluster: the nodes, each range's hosts, and
    /// for the ranges open on this node the sequence applied here and how far behind the log.
    public enum Cluster: WireOperation {
        public struct Node: Sendable, Equatable {
            public var name: String
            public var address: String
            /// Its lease holds.
            public var live: Bool

            public init(name: String, address: String, live: Bool) {
                self.name = name
                self.address = address
                self.live = live
            }
        }

        public struct Range: Sendable, Equatable {
            public var range: Int
            public var hosts: [String]
            /// Nodes catching up to host it.
            public var joining: [String]
            /// The last sequence the range's log has given.
            public var last: Int64
            /// The sequence applied on the answering node, when the range is open there.
            public var applied: Int64?
            /// The last sequence its stored snapshot holds (0: none).
            public var snapshot: Int64
            /// The last sequence deleted from its log (its hosts hold it, and so does the
            /// snapshot).
            public var truncated: Int64

            public init(
                range: Int, hosts: [String], joining: [String], last: Int64, applied: Int64?, snapshot: Int64 = 0,
                truncated: Int64 = 0
            ) {
                self.range = range
                self.hosts = hosts
                self.joining = joining
                self.last = last
                self.applied = applied
                self.snapshot = snapshot
                self.truncated = truncated
            }
        }

        public struct Answer: Sendable, Equatable {
            /// The answering node's name.
            public var node: String
            public var nodes: [Node]
            public var ranges: [Range]

            public init(node: String, nodes: [Node], ranges: [Range]) {
                self.node = node
                self.nodes = nodes
                self.ranges = ranges
            }
        }

        public static let name = "cluster"

        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            writer.field("node")
            writer.string(answer.node)
            writer.field("nodes")
            writer.array(count: answer.nodes.count) { writer, i in
                let node = answer.nodes[i]
                writer.raw("{")
                writer.key("name")
                writer.string(node.name)
                writer.field("address")
                writer.string(node.address)
                writer.field("live")
                writer.bool(node.live)
                writer.raw("}")
            }
            writer.field("ranges")
            writer.array(count: answer.ranges.count) { writer, i in
                let range = answer.ranges[i]
                writer.raw("{")
                writer.key("range")
                writer.int(Int64(range.range))
                for (key, names) in [("hosts", range.hosts), ("joining", range.joining)] {
                    writer.field(key)
                    writer.array(count: names.count) { $0.string(names[$1]) }
                }
                writer.field("last")
                writer.int(range.last)
                writer.field("snapshot")
                writer.int(range.snapshot)
                writer.field("truncated")
                writer.int(range.truncated)
                if let applied = range.applied {
                    writer.field("applied")
                    writer.int(applied)
                    writer.field("lag")
                    writer.int(max(0, range.last - applied))
                }
                writer.raw("}")
            }
        }

        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            func strings(_ value: JSONValue?) -> [String] { value?.arrayValue?.compactMap(\.stringValue) ?? [] }
            let nodes = try answer.required("nodes", as: "array", \.arrayValue).compactMap(\.objectValue)
            let ranges = try answer.required("ranges", as: "array", \.arrayValue).compactMap(\.objectValue)
            return Answer(
                node: try answer.required("node", as: "string", \.stringValue),
                nodes: nodes.map {
                    Node(
                        name: $0["name"]?.stringValue ?? "", address: $0["address"]?.stringValue ?? "",
                        live: $0["live"] == .bool(true))
                },
                ranges: ranges.map {
                    Range(
                        range: Int($0["range"]?.integerValue ?? 0), hosts: strings($0["hosts"]),
                        joining: strings($0["joining"]), last: $0["last"]?.integerValue ?? 0,
                        applied: $0["applied"]?.integerValue, snapshot: $0["snapshot"]?.integerValue ?? 0,
                        truncated: $0["truncated"]?.integerValue ?? 0)
                })
        }
    }
}
