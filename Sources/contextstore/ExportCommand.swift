import ArgumentParser
import ContextModel
import ContextTools

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
            key. `contextstore import FILE` into an empty server restores the same rows (the same \
            digest), feedback counts aside.
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
        let exporter = Exporter(user: user, withVector: vectors, pageSize: pageSize)
        do {
            _ = try await connection.connected { client in
                try await exporter.run(client) { print(String(decoding: $0, as: UTF8.self), terminator: "") }
            }
        } catch let error as ExportError {
            printError(error.answer)
            throw ExitCode(1)
        }
    }
}
