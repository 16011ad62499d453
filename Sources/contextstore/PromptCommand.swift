import ArgumentParser
import ContextModel
import ContextProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// `contextstore prompt`: the prompt for a user's new message, within a token budget.
struct PromptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prompt", abstract: "Build the prompt for a user's new message within a token budget.",
        discussion: """
            The prompt holds the instructions, the user's pinned facts (metadata "pinned": true), the \
            memories a search for the query finds (near-duplicates out, the most relevant first), the latest turns of \
            --session, and the query. What does not fit is reported in 'dropped' with its reason. With \
            --text, the prompt alone is printed, and a one-line report on standard error.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The user whose memories the prompt draws on.") var user: String
    @Option(help: "The new message.") var query: String
    @Option(help: "The current conversation: its latest turns go in verbatim.") var session: String?
    @Option(help: "Tokens the prompt may use (1-1000000; default 2048).") var budget: Int?
    @Option(help: "A template the server loaded (serve --templates), or a template's text.") var template: String?
    @Option(help: "The instructions (default: the server's).") var system: String?
    @Option(help: "The most memories (0-100; default: as many as the budget holds).") var limit: Int?
    @Option(help: "The most turns of --session (0-200; default 10).") var recent: Int?
    @Option(help: "text, or messages (a chat-message list as well).") var format: String?
    @Option(
        name: .customLong("cap"),
        help: "A section's own token cap, SECTION=TOKENS (pinned, memories, summary, recent); repeat for several.")
    var caps: [String] = []
    @OptionGroup var ranking: RankingOptions
    @OptionGroup var filter: RowOptions
    @OptionGroup var metadata: MetadataOptions
    @Flag(help: "Print the prompt text alone (and a report on standard error).") var text = false

    func run() async throws {
        var fields: [(key: String, value: JSONValue)] = [("user", .string(user)), ("query", .string(query))]
        fields += optional("session", session) + optional("budget", budget.map(Int64.init))
        fields += optional("template", template) + optional("system", system)
        fields += optional("limit", limit.map(Int64.init)) + optional("recent", recent.map(Int64.init))
        fields += optional("format", format) + ranking.fields + filter.fields
        if !caps.isEmpty {
            var sections: [(key: String, value: JSONValue)] = []
            for cap in caps { sections.append(try Self.cap(cap)) }
            fields.append(("caps", .object(JSONObject(sections))))
        }
        var output: ((JSONObject) -> Void)?
        if text { output = { Self.report($0) } }
        try await connection.send(Operations.Prompt.self, fields + metadata.fields(), output: output)
    }

    private static func cap(_ text: String) throws -> (key: String, value: JSONValue) {
        let parts = text.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let tokens = Int64(parts[1]) else {
            throw ValidationError("--cap takes SECTION=TOKENS, e.g. memories=600, not '\(text)'")
        }
        return (String(parts[0]), .integer(tokens))
    }

    /// Prints the prompt text, then its counts on standard error.
    private static func report(_ answer: JSONObject) {
        print(answer["prompt"]?.stringValue ?? "")
        fflush(nil)
        var reasons: [String: Int] = [:]
        for dropped in answer["dropped"]?.arrayValue ?? [] {
            reasons[dropped.objectValue?["reason"]?.stringValue ?? "?", default: 0] += 1
        }
        let left = reasons.sorted { $0.key < $1.key }.map { "\($1) (\($0))" }.joined(separator: ", ")
        printError(
            "prompt: \(answer["tokens"]?.integerValue ?? 0) tokens (\(answer["counter"]?.stringValue ?? "?")), "
                + "\(answer["used"]?.arrayValue?.count ?? 0) memories and turns in; left out: \(left.isEmpty ? "none" : left)"
        )
    }
}
