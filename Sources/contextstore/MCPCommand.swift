import ArgumentParser
import ContextClient
import ContextMCP
import ContextServer
import Foundation
import Logging
import MCP
import MemoryStore

/// `contextstore mcp`: one user's memories as an MCP server on standard input and output, the
/// way an agent (Claude Desktop, an IDE) starts a tool server as a subprocess.
struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve one user's memories to an agent over MCP on standard input and output.",
        discussion: """
            The agent gets the tools remember, recall, build_context, list_sessions, get_session, \
            forget and feedback, a resource per session (memory://USER/sessions/SESSION) and the \
            prompt with_memory. Every call is about --user: no tool takes a user, so a model cannot \
            reach another user's memories. Requests go to a running server (--server, with --secret \
            when it has keys), or to a space this process serves itself (--db). Logs go to standard \
            error; standard output carries the protocol alone.
            """)

    @Option(help: "The user whose memories the agent sees (fixed for the session).")
    var user: String

    @Option(
        help:
            "A running server's HOST:PORT (default: $CONTEXTSTORE_HOST and $CONTEXTSTORE_PORT, else 127.0.0.1:7420).")
    var server: String?

    @Option(help: "Serve this SQLite file in this process instead of connecting to a server.")
    var db: String?

    @Option(help: "With --db: the embedding model's folder, or none (default: the fetched MiniLM when present).")
    var model: String?

    @OptionGroup var key: KeyOption

    func validate() throws {
        guard !user.isEmpty else { throw ValidationError("--user must not be empty") }
        if server != nil, db != nil { throw ValidationError("--server and --db name two spaces; give one") }
        if model != nil, db == nil { throw ValidationError("--model applies to --db only") }
        if let server { _ = try Self.address(server) }
    }

    /// `HOST:PORT` (an IPv6 host in brackets).
    static func address(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { throw ValidationError("--server must be HOST:PORT, not '\(text)'") }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    func run() async throws {
        // Standard output is the protocol's: every log line goes to standard error.
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "contextstore-mcp")
        logger.logLevel = .warning
        var local: (server: ContextStoreServer, store: MemoryStore)?
        let client: ContextStoreClient
        if let db {
            let embedder = try ModelOption.load(model)
            let store: MemoryStore
            do {
                store = try MemoryStore(path: db, dimension: embedder?.dimension, model: embedder?.modelID)
            } catch let error as StoreError {
                throw fail("cannot open \(db): \(error.message)")
            }
            var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, threads: 2)
            configuration.httpAddress = nil
            let server = try await ContextStoreServer(
                store: store, embedder: embedder, configuration: configuration, logger: logger)
            local = (server, store)
            client = try await ContextStoreClient.connect(port: server.port)
        } else {
            let environment = ProcessInfo.processInfo.environment
            let (host, port) =
                try server.map(Self.address)
                ?? (
                    environment["CONTEXTSTORE_HOST"] ?? "127.0.0.1",
                    environment["CONTEXTSTORE_PORT"].flatMap { Int($0) } ?? 7420
                )
            client = try await ContextStoreClient.connect(host: host, port: port, secret: key.secret)
        }
        let mcp = await MemoryTools(user: user, backend: client).makeServer(version: serverVersion)
        try await mcp.start(transport: StdioTransport(logger: logger))
        await mcp.waitUntilCompleted()
        await client.close()
        if let local {
            await local.server.shutdown()
            local.store.close()
        }
    }
}
