import ContextClient
import ContextModel
import ContextProtocol

/// Reads a server's `export` a page at a time and hands on each memory as one JSON line (what
/// `contextstore export` prints and `contextstore import` reads back).
public struct Exporter: Sendable {
    /// Whose memories; every user's (an admin's key) when nil.
    public var user: String?
    /// Each memory's vector as stored, base64 float32.
    public var withVector: Bool
    /// Memories asked for per request.
    public var pageSize: Int

    public init(user: String? = nil, withVector: Bool = false, pageSize: Int = 500) {
        self.user = user
        self.withVector = withVector
        self.pageSize = min(max(1, pageSize), ExportPage.maximumLimit)
    }

    /// Pages through the export, handing `write` each page's lines (a newline after each).
    /// - Returns: How many memories were written.
    /// - Throws: `ExportError` with the server's answer when it refuses a page; the client's
    ///   errors.
    public func run(_ client: ContextStoreClient, write: ([UInt8]) throws -> Void) async throws -> Int {
        var after: Int64 = 0
        var written = 0
        while true {
            let request = Operations.Export.requestLine(
                Operations.Export.Arguments(user: user, after: after, limit: pageSize, withVector: withVector))
            let answer = try await client.roundTrip(line: request)
            guard answer["ok"] == .bool(true) else {
                throw ExportError(answer: JSONWriter.serialize(.object(answer)))
            }
            let page = try Operations.Export.decode(answer: answer)
            var lines = JSONWriter()
            for memory in page.memories {
                lines.exported(memory)
                lines.raw(UInt8(ascii: "\n"))
            }
            try write(lines.bytes)
            written += page.memories.count
            guard let next = page.next else { return written }
            after = next
        }
    }
}

/// A page the server refused: its answer line.
public struct ExportError: Error, Sendable, Equatable, CustomStringConvertible {
    public var answer: String
    public var description: String { answer }
}
