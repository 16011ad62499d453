import ArgumentParser
import ContextModel
import ContextProtocol

/// `contextstore export`: a user's memories, or every user's, as JSON lines on standard output.
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a user's memories (or every user's) as JSON lines, in the order they were stored.",
        discussion: """
            Each line is one memory with every field: id, user, session, role, speaker, text, \
            created_at, metadata, and where set expires_at, valid_from, valid_to, supersedes, \
            superseded_by, sources, helped and not_helped; with --vectors its vector as stored \
            (base64 float32). Pages through the server's export op; the whole space needs an admin's \
            key. `contextstore import --file F --format jsonl` reads it back.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The user (default: every user, with an admin's key).") var user: String?
    @Flag(help: "Include each memory's vector as stored (base64 float32).") var vectors = false
    @Option(help: "Memories asked for per request (1-1000).") var pageSize: Int = 500

    func validate() throws {
        guard (1...ExportPage.maximumLimit).contains(pageSize) else {
            throw ValidationError("--page-size must be between 1 and \(ExportPage.maximumLimit)")
        }
    }

    func run() async throws {
        let failure: JSONObject? = try await connection.connected { client in
            var after: Int64 = 0
            while true {
                var fields: [(key: String, value: JSONValue)] = [
                    ("op", .string(Operations.Export.name)), ("after", .integer(after)),
                    ("limit", .integer(Int64(pageSize))),
                ]
                if let user { fields.append(("user", .string(user))) }
                if vectors { fields.append(("with_vector", .bool(true))) }
                let answer = try await client.roundTrip(.object(JSONObject(fields)))
                guard answer["ok"] == .bool(true) else { return answer }
                let page = try Operations.Export.decode(answer: answer)
                var lines = JSONWriter()
                for memory in page.memories {
                    lines.exported(memory)
                    lines.raw(UInt8(ascii: "\n"))
                }
                print(String(decoding: lines.bytes, as: UTF8.self), terminator: "")
                guard let next = page.next else { return nil }
                after = next
            }
        }
        if let failure {
            printError(JSONWriter.serialize(.object(failure)))
            throw ExitCode(1)
        }
    }
}
