import ArgumentParser
import ContextModel
import ContextProtocol

/// The filter flags of `search`, `list` and `forget`, sent as the protocol's fields.
struct FilterOptions: ParsableArguments {
    @Option(help: "Only this session.") var session: String?
    @OptionGroup var rows: RowOptions

    var fields: [(key: String, value: JSONValue)] { optional("session", session) + rows.fields }
}

/// The filters besides the session, which `prompt` takes as well (its `--session` names the
/// current conversation instead).
struct RowOptions: ParsableArguments {
    @Option(help: "Only this role: user, assistant, system or tool.") var role: String?
    @Option(help: "Only what this speaker said.") var speaker: String?
    @Option(help: "Only memories created at or after this time (unix ms or ISO 8601).") var since: String?
    @Option(help: "Only memories created at or before this time (unix ms or ISO 8601).") var until: String?

    var fields: [(key: String, value: JSONValue)] {
        optional("role", role) + optional("speaker", speaker) + time("since", since) + time("until", until)
    }
}

/// How `search` and `prompt` rank a user's memories, sent as the protocol's fields.
struct RankingOptions: ParsableArguments {
    @Option(help: "vector, keyword or hybrid (default: the server chooses).") var mode: String?
    @Option(help: "Weigh recency: a memory this many seconds old counts 3/4 (default: time plays no part).")
    var halfLife: Double?
    @Option(help: "Weigh what users said of a memory (feedback), above 0 and at most 10 (default: not at all).")
    var feedbackBoost: Double?
    @Option(help: "With each memory found, this many turns of its session before and after it (0-20).")
    var context: Int?
    @Option(help: "hnsw spaces: candidates kept by the graph search (default: the space's).") var ef: Int?
    @Flag(help: "Scan exactly, never the graph (the ground truth).") var exact = false
    @Option(help: "Read what held at this time (unix ms or ISO 8601) and had been stored by then (default: now).")
    var asOf: String?
    @Option(help: nowHelp) var now: String?

    var fields: [(key: String, value: JSONValue)] {
        var fields = optional("mode", mode) + optional("ef", ef.map(Int64.init))
        fields += optional("context", context.map(Int64.init))
        if let halfLife { fields.append(("half_life", .number(halfLife))) }
        if let feedbackBoost { fields.append(("feedback_boost", .number(feedbackBoost))) }
        if exact { fields.append(("exact", .bool(true))) }
        return fields + time("as_of", asOf) + time("now", now)
    }
}

/// The help of `--now`, on every command whose answer depends on the time.
let nowHelp: ArgumentHelp =
    "Read at this time (unix ms or ISO 8601): expiry, recency and which facts hold, as of then (default: the server's clock)."

/// `--where`, the metadata conditions of `search`, `list` and `forget`.
struct MetadataOptions: ParsableArguments {
    @Option(
        name: .customLong("where"),
        help:
            "Metadata conditions, a JSON object: {\"topic\":\"work\",\"n\":{\"gte\":3},\"tag\":{\"in\":[\"a\",\"b\"]}}."
    )
    var conditions: String?

    func fields() throws -> [(key: String, value: JSONValue)] {
        guard let conditions else { return [] }
        guard let value = try? JSONParser.parse(conditions) else { throw ValidationError("--where must be JSON") }
        return [("where", value)]
    }
}

/// A time flag as the protocol takes it: a number as unix milliseconds, anything else as text
/// (ISO 8601, checked by the server).
func time(_ key: String, _ text: String?) -> [(key: String, value: JSONValue)] {
    guard let text else { return [] }
    return [(key, Int64(text).map { .integer($0) } ?? .string(text))]
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "A page of a user's memories in time order.",
        discussion: "Prints next_cursor when there are more: pass it as --cursor for the next page.")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The user.") var user: String
    @OptionGroup var filter: FilterOptions
    @OptionGroup var metadata: MetadataOptions
    @Flag(help: "Newest first (default: oldest first).") var newestFirst = false
    @Option(help: "Memories per page (1-1000).") var limit: Int64 = Int64(ListRequest.defaultLimit)
    @Option(help: "Where the previous page ended (its next_cursor).") var cursor: String?
    @Flag(help: "Include each memory's vector.") var withVector = false
    @Option(help: "List what held at this time (unix ms or ISO 8601) and had been stored by then (default: now).")
    var asOf: String?
    @Flag(help: "List superseded memories too, with their links (not with --as-of).") var includeSuperseded = false
    @Option(help: nowHelp) var now: String?

    func run() async throws {
        var fields: [(key: String, value: JSONValue)] = [("user", .string(user)), ("limit", .integer(limit))]
        fields += filter.fields + (try metadata.fields()) + optional("cursor", cursor)
        if newestFirst { fields.append(("order", .string("desc"))) }
        if withVector { fields.append(("with_vector", .bool(true))) }
        fields += time("as_of", asOf) + time("now", now)
        if includeSuperseded { fields.append(("include_superseded", .bool(true))) }
        try await connection.send(Operations.List.self, fields)
    }
}

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions", abstract: "A user's sessions with their turn counts, latest active first.")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The user.") var user: String
    @Option(help: "The most sessions to list (1-10000).") var limit: Int64 = 1000

    func run() async throws {
        try await connection.send(Operations.Sessions.self, [("user", .string(user)), ("limit", .integer(limit))])
    }
}

struct UsersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users",
        abstract: "The users whose ids begin with a prefix, with their memory counts, a page at a time.")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Only users whose ids begin with this.") var prefix = ""
    @Option(help: "The most users to list (1-1000).") var limit: Int64 = 100
    @Option(help: "The last answer's 'next': the page after it.") var after: String?

    func run() async throws {
        var fields: [(String, JSONValue)] = [("prefix", .string(prefix)), ("limit", .integer(limit))]
        if let after { fields.append(("after", .string(after))) }
        try await connection.send(Operations.Users.self, fields)
    }
}

struct UpdateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Change a memory's session, role, speaker, metadata or time (its text and vector stay).")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The memory's user.") var user: String
    @Argument(help: "The memory's id.") var id: String
    @Option(help: "The new session.") var session: String?
    @Flag(help: "Remove the session.") var clearSession = false
    @Option(help: "The new role: user, assistant, system or tool.") var role: String?
    @Flag(help: "Remove the role.") var clearRole = false
    @Option(help: "The new speaker.") var speaker: String?
    @Flag(help: "Remove the speaker.") var clearSpeaker = false
    @Option(help: "The new metadata, a JSON object (replaces the old whole).") var metadata: String?
    @Option(help: "The new creation time (unix ms or ISO 8601).") var createdAt: String?

    func validate() throws {
        if clearSession && session != nil { throw ValidationError("give --session or --clear-session, not both") }
        if clearRole && role != nil { throw ValidationError("give --role or --clear-role, not both") }
        if clearSpeaker && speaker != nil { throw ValidationError("give --speaker or --clear-speaker, not both") }
    }

    func run() async throws {
        var fields: [(key: String, value: JSONValue)] = [("user", .string(user)), ("id", .string(id))]
        fields += optional("session", session) + optional("role", role) + time("created_at", createdAt)
        if clearSession { fields.append(("session", .null)) }
        if clearRole { fields.append(("role", .null)) }
        if clearSpeaker { fields.append(("speaker", .null)) }
        fields += optional("speaker", speaker)
        if let metadata {
            guard let value = try? JSONParser.parse(metadata) else { throw ValidationError("--metadata must be JSON") }
            fields.append(("metadata", value))
        }
        try await connection.send(Operations.Update.self, fields)
    }
}
