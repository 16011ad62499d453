import ArgumentParser
import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// Flags shared by every command that talks to a running server.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("host"), help: "Server address (default: $CONTEXTSTORE_HOST, else 127.0.0.1).")
    var hostFlag: String?

    @Option(name: .customLong("port"), help: "Server port (default: $CONTEXTSTORE_PORT, else 7420).")
    var portFlag: Int?

    var host: String { hostFlag ?? ProcessInfo.processInfo.environment["CONTEXTSTORE_HOST"] ?? "127.0.0.1" }
    var port: Int { portFlag ?? ProcessInfo.processInfo.environment["CONTEXTSTORE_PORT"].flatMap { Int($0) } ?? 7420 }

    @Flag(help: "Print a readable table instead of JSON.")
    var pretty = false

    @Option(help: "Seconds to wait for the connection and for the answer (a health probe's limit).")
    var timeout: Double = 5

    @OptionGroup var key: KeyOption

    @Flag(help: "Speak TLS to a server started with --tls-cert (trusting the system's roots, or --tls-ca).")
    var tls = false

    @Option(help: "With --tls: trust the certificates of this PEM file (a self-signed server's, say).")
    var tlsCa: String?

    /// The TLS settings the flags ask for; nil: plain TCP.
    func tlsConfiguration() throws -> TLSConfiguration? {
        guard tls || tlsCa != nil else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let tlsCa {
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(tlsCa))
        }
        return configuration
    }

    func validate() throws {
        if portFlag == nil, let text = ProcessInfo.processInfo.environment["CONTEXTSTORE_PORT"] {
            guard let port = Int(text), (1...65535).contains(port) else {
                throw ValidationError("CONTEXTSTORE_PORT must be a port between 1 and 65535, not '\(text)'")
            }
        }
        try requireFlag("port", port, in: 1...65535)
        guard timeout > 0, timeout <= 86_400 else { throw ValidationError("--timeout must be between 0 and 86400 s") }
    }

    /// Sends one `Op` request with `fields` as the user gave them (the server validates them, so
    /// the CLI reports exactly what any client would get) and prints the answer; exits with
    /// status 1 when the server refused it.
    /// - Parameter output: Prints a successful answer its own way, instead of as JSON.
    func send<Op: WireOperation>(
        _ op: Op.Type, _ fields: [(key: String, value: JSONValue)] = [], output: ((JSONObject) -> Void)? = nil
    ) async throws {
        let response = try await connected { client in
            try await client.roundTrip(.object(JSONObject([("op", .string(Op.name))] + fields)))
        }
        let ok = response["ok"] == .bool(true)
        if ok, let output {
            output(response)
        } else {
            print(pretty ? PrettyPrinter.render(response) : JSONWriter.serialize(.object(response)))
        }
        guard ok else { throw ExitCode(1) }
    }
}

extension ConnectionOptions {
    /// Runs `body` with a client connected to the server, closed afterwards; a client's error
    /// (no server, a refused key) is printed and ends the command with status 1.
    func connected<T: Sendable>(_ body: (ContextStoreClient) async throws -> T) async throws -> T {
        do {
            let client = try await ContextStoreClient.connect(
                host: host, port: port, timeout: .nanoseconds(Int64(timeout * 1e9)), secret: key.secret,
                tls: try tlsConfiguration())
            do {
                let result = try await body(client)
                await client.close()
                return result
            } catch {
                await client.close()
                throw error
            }
        } catch let error as ClientError {
            printError("error: \(error)")
            throw ExitCode(1)
        }
    }
}

/// The key a client command authenticates with, on a server with keys: `--secret`, or the
/// environment's `CONTEXTSTORE_SECRET` (which, unlike an argument, other users' `ps` cannot see).
struct KeyOption: ParsableArguments {
    @Option(
        name: .customLong("secret"),
        help: "A key's secret for a server run with --keys (default: $CONTEXTSTORE_SECRET).")
    var flag: String?

    var secret: String? { flag ?? ProcessInfo.processInfo.environment["CONTEXTSTORE_SECRET"] }
}

/// Parses a vector given as a JSON array (`[0.1, 0.2]`) or as comma-separated numbers.
func parseVector(_ text: String) throws -> JSONValue {
    let trimmed = String(text.drop { $0 == " " })
    let json = trimmed.hasPrefix("[") ? trimmed : "[\(trimmed)]"
    guard let value = try? JSONParser.parse(json), case .array = value else {
        throw ValidationError("--vector must be a JSON array or comma-separated numbers")
    }
    return value
}

/// Appends `key: value` when the value is set.
func optional(_ key: String, _ value: String?) -> [(key: String, value: JSONValue)] {
    value.map { [(key, .string($0))] } ?? []
}

func optional(_ key: String, _ value: Int64?) -> [(key: String, value: JSONValue)] {
    value.map { [(key, .integer($0))] } ?? []
}

struct AddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add (or replace) one memory.")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The memory's user (tenant).") var user: String
    @Option(help: "The memory's text.") var text: String
    @Option(help: "The embedding: a JSON array or comma-separated numbers (default: the server embeds the text).")
    var vector: String?
    @Option(help: "The memory's id (default: assigned by the server); an existing id is replaced.") var id: String?
    @Option(help: "Session id.") var session: String?
    @Option(help: "Role: user, assistant, system or tool.") var role: String?
    @Option(help: "Who said it (a name).") var speaker: String?
    @Option(help: "Metadata, a JSON object.") var metadata: String?
    @Option(help: "Creation time, unix milliseconds or ISO 8601 (default: now).") var createdAt: String?
    @Option(help: "Seconds until it expires (default: never).") var ttl: Int64?
    @Option(help: "From when it holds, unix milliseconds or ISO 8601 (default: its creation time).")
    var validFrom: String?
    @Option(help: "The id of the user's memory it replaces: that one stops holding when this one begins.")
    var supersedes: String?
    @Option(
        name: .customLong("source"),
        help: "Where it came from: the id of a turn it was derived from, or another reference; repeat for several.")
    var sources: [String] = []

    func run() async throws {
        var fields: [(key: String, value: JSONValue)] = [
            ("user", .string(user)), ("text", .string(text)),
        ]
        if let vector { fields.append(("vector", try parseVector(vector))) }
        fields +=
            optional("id", id) + optional("session", session) + optional("role", role) + optional("speaker", speaker)
        fields += time("created_at", createdAt) + optional("ttl", ttl)
        fields += time("valid_from", validFrom) + optional("supersedes", supersedes)
        if !sources.isEmpty { fields.append(("sources", .array(sources.map { .string($0) }))) }
        if let metadata {
            guard let value = try? JSONParser.parse(metadata) else { throw ValidationError("--metadata must be JSON") }
            fields.append(("metadata", value))
        }
        try await connection.send(Operations.Add.self, fields)
    }
}

struct SearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search", abstract: "Find a user's memories for a question (text) or a vector.",
        discussion: """
            Modes: vector (similarity to the vector, or to the model's embedding of --query), keyword \
            (BM25 over the words of --query) and hybrid (both, fused by reciprocal rank; the default \
            for --query on a server with a model). docs/PROTOCOL.md explains scores and --explain.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Search this user's memories only.") var user: String
    @Option(help: "The query as text: its words for the keyword index, its embedding for the vector side.")
    var query: String?
    @Option(help: "The query embedding: a JSON array or comma-separated numbers (default: the server embeds --query).")
    var vector: String?
    @Option(help: "How many hits (1-1000).") var k: Int = SearchRequest.defaultK
    @OptionGroup var ranking: RankingOptions
    @OptionGroup var filter: FilterOptions
    @OptionGroup var metadata: MetadataOptions
    @Flag(help: "Show each hit's vector and keyword scores and ranks, neighbour credit and recency.") var explain =
        false
    @Flag(help: "Search superseded memories too (not with --as-of).") var includeSuperseded = false

    func run() async throws {
        guard query != nil || vector != nil else { throw ValidationError("give --query, --vector, or both") }
        var fields: [(key: String, value: JSONValue)] = [
            ("user", .string(user)), ("k", .integer(Int64(k))),
        ]
        fields += optional("query", query) + ranking.fields
        if let vector { fields.append(("vector", try parseVector(vector))) }
        if explain { fields.append(("explain", .bool(true))) }
        if includeSuperseded { fields.append(("include_superseded", .bool(true))) }
        try await connection.send(Operations.Search.self, fields + filter.fields + metadata.fields())
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Show one or more of a user's memories.")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The memories' user (an id is unique within its user).") var user: String
    @Argument(help: "The memories' ids (several: one request, the ids not found listed as missing).")
    var ids: [String]
    @Flag(help: "Include the vectors.") var withVector = false

    func run() async throws {
        guard let first = ids.first else { throw ValidationError("give at least one id") }
        var fields: [(key: String, value: JSONValue)] = [("user", .string(user))]
        fields.append(ids.count == 1 ? ("id", .string(first)) : ("ids", .array(ids.map { .string($0) })))
        if withVector { fields.append(("with_vector", .bool(true))) }
        try await connection.send(Operations.Get.self, fields)
    }
}

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete one of a user's memories.")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The memory's user (an id is unique within its user).") var user: String
    @Argument(help: "The memory's id.") var id: String
    @Flag(help: "Also delete the user's memories whose sources name it.") var withDerived = false

    func run() async throws {
        var fields: [(key: String, value: JSONValue)] = [("user", .string(user)), ("id", .string(id))]
        if withDerived { fields.append(("with_derived", .bool(true))) }
        try await connection.send(Operations.Delete.self, fields)
    }
}

struct ForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Delete a user's memories: all of them, or those of a session, role, time range or metadata.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The user.") var user: String
    @OptionGroup var filter: FilterOptions
    @OptionGroup var metadata: MetadataOptions
    @Flag(help: "With no filter: delete every memory of the user (without it, that is refused).")
    var all = false
    @Flag(help: "Also delete the user's memories whose sources name one of those deleted.") var withDerived = false

    func validate() throws {
        if filter.fields.isEmpty, (try? metadata.fields())?.isEmpty ?? false, !all {
            throw ValidationError("without a filter this deletes every memory of '\(user)'; add --all to mean it")
        }
    }

    func run() async throws {
        var fields = [("user", .string(user))] + filter.fields + (try metadata.fields())
        if withDerived { fields.append(("with_derived", .bool(true))) }
        try await connection.send(Operations.Forget.self, fields)
    }
}

struct FeedbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feedback", abstract: "Say whether a memory helped (counted with it; search's --feedback-boost).")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The memory's user.") var user: String
    @Argument(help: "The memory's id.") var id: String
    @Flag(exclusivity: .exclusive, help: "Whether it helped.") var verdict: Verdict

    enum Verdict: EnumerableFlag {
        case helped, notHelped
    }

    func run() async throws {
        try await connection.send(
            Operations.Feedback.self,
            [("user", .string(user)), ("id", .string(id)), ("helped", .bool(verdict == .helped))])
    }
}

struct MetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "The server's metrics in Prometheus' text format (an admin's).")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await connection.send(Operations.Metrics.self) { answer in
            print(answer["text"]?.stringValue ?? "", terminator: "")
        }
    }
}

struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "The server's keys: names, roles, users and rates, never secrets (an admin's).")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws { try await connection.send(Operations.Keys.self) }
}

struct SlowRequestsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slow-requests",
        abstract: "The latest requests slower than the server's --slow-ms, newest first (an admin's).")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Requests at most (1-256; the server's default: 50).") var limit: Int?

    func run() async throws {
        try await connection.send(Operations.SlowRequests.self, limit.map { [("limit", .integer(Int64($0)))] } ?? [])
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Counts and sizes of the space.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws { try await connection.send(Operations.Stats.self) }
}

struct PingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ping", abstract: "Check that the server answers.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws { try await connection.send(Operations.Ping.self) }
}

struct HelloCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hello", abstract: "Server version, protocol, dimension, metric, index and BLAS.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws { try await connection.send(Operations.Hello.self) }
}

struct EmbedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed", abstract: "Embed texts with the server's model and print the vectors.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Texts to embed (at most 256).") var texts: [String]

    func run() async throws {
        try await connection.send(Operations.Embed.self, [("texts", .array(texts.map { .string($0) }))])
    }
}

/// Prints `error: <message>` as one line on standard error; returns the exit status to throw
/// (1), for a failure that is not the user's syntax (that is a `ValidationError`, with usage).
func fail(_ message: String) -> ExitCode {
    printError("error: \(message)")
    return ExitCode(1)
}

/// Writes one line to standard error.
func printError(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = write(2, &bytes, bytes.count)
}
