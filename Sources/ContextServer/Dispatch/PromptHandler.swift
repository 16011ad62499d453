import ContextModel
import ContextProtocol
import MemoryStore
import PromptBuilder

/// How the server builds prompts: how it counts tokens, the templates `serve --templates`
/// loaded, and the instructions of a prompt that names none.
public struct PromptSettings: Sendable {
    /// The instructions of a prompt whose request has no `system`.
    public static let defaultSystem =
        "Answer the user's message. Use the memories below where they help; each says when it was said and by whom."
    /// The most pinned facts a prompt holds (the oldest first).
    public static let maximumPinned = 50

    /// The longest template text a request may carry (when the server takes them at all).
    public static let maximumRequestTemplateBytes = 16 * 1024
    /// The most bytes a template sent in a request may render (`PromptTemplate.renderBound`).
    public static let maximumRequestRenderBytes = 8 * 1024 * 1024

    public var counter: TokenCounter
    public var templates: [String: PromptTemplate]
    /// Whether a request may carry a template's text (`serve --allow-request-templates`); off by
    /// default: any read key could otherwise make the server parse and render what it likes.
    public var allowRequestTemplates: Bool

    public init(
        counter: TokenCounter = .estimate, templates: [String: PromptTemplate] = [:],
        allowRequestTemplates: Bool = false
    ) {
        self.counter = counter
        self.templates = templates
        self.allowRequestTemplates = allowRequestTemplates
    }
}

extension ServerContext {
    /// Builds the prompt a request asks for: pinned facts (metadata `pinned: true`), the
    /// memories a search for the query finds, and the session's latest turns. The search asks
    /// for as many memories as the budget could hold at 16 tokens each (a short turn with its
    /// template), at most `limit`, and 10 more, at least 30, so that near-duplicates and
    /// diversity leave enough: ranking more than a budget can take only costs time.
    func prompt(_ request: Operations.Prompt.Arguments) throws -> Operations.Prompt.Answer {
        let (template, fromRequest) = try template(request.template)
        let user = request.search.user
        let store = try stores.of(user)
        // The dispatcher gives every read a time (`now`); the prompt's `{{now}}` shows the time
        // it is read as of.
        let clock = request.search.now ?? Clock.nowMilliseconds()
        let now: Int64 = if case .asOf(let time) = request.search.validity { time } else { clock }
        var memories: [PromptItem] = []
        /// Every memory read for the prompt, for the sources of those it uses.
        var read: [Memory] = []
        if request.limit > 0 {
            var search = request.search
            search.now = clock
            search.k = max(30, min(request.limit, request.budget / 16) + 10)
            search = try embedded(search)
            let hits = try store.search(search)
            // Higher must be better: only a plain vector search in an l2 space scores by distance
            // (with recency or feedback weighed in, scores are fused: higher is better).
            let distance = search.scoresAreDistances(metric: store.metric)
            let listed = hits.flatMap { hit in
                let before = hit.context.filter { $0.createdAt <= hit.memory.createdAt }
                let after = hit.context.filter { $0.createdAt > hit.memory.createdAt }
                return (before + [hit.memory] + after).map { ($0, Double(distance ? -hit.score : hit.score)) }
            }
            read += listed.map(\.0)
            let vectors = try store.vectors(user: user, ids: listed.map(\.0.id))
            memories = zip(listed, vectors).map { listed, vector in
                Self.item(listed.0, relevance: listed.1, vector: vector)
            }
        }
        var recent: [PromptItem] = []
        if let session = request.session, request.recent > 0 {
            let page = try store.list(
                ListRequest(
                    user: user, filter: MemoryFilter(rows: RowFilter(session: session)), newestFirst: true,
                    limit: request.recent, withVector: true, validity: request.search.validity, now: clock))
            read += page.memories
            recent = page.memories.reversed().map { Self.item($0, vector: $0.vector) }
        }
        let pinnedFacts = try store.pinned(
            user: user, limit: PromptSettings.maximumPinned, validity: request.search.validity, now: clock)
        read += pinnedFacts
        var pinned = pinnedFacts.map { Self.item($0, vector: $0.vector) }
        if request.showChanges {
            // What each memory that superseded another replaced: its text and end.
            let successors = read.filter { $0.validity.supersedes != nil }
            let predecessors = try store.get(
                user: user, ids: successors.compactMap(\.validity.supersedes), withVector: false, now: clock)
            var before: [ExactString: (text: String, until: Int64)] = [:]
            for (successor, predecessor) in zip(successors, predecessors) {
                guard let predecessor else { continue }
                before[ExactString(successor.id)] = (
                    predecessor.text, predecessor.validity.to ?? successor.validity.from ?? successor.createdAt
                )
            }
            func shown(_ items: inout [PromptItem]) {
                for i in items.indices { items[i].before = before[ExactString(items[i].id)] }
            }
            shown(&memories)
            shown(&pinned)
            shown(&recent)
        }

        var caps: [PromptSection: Int] = [:]
        for (name, cap) in request.caps {
            if let section = PromptSection(rawValue: name) { caps[section] = cap }
        }
        var embed: (@Sendable ([String]) -> [[Float]])?
        if let embedder { embed = { texts in embedder.embed(texts, scope: Self.cacheScope(user: user)) } }
        let builder = PromptBuilder(
            counter: prompts.counter, template: template, embed: embed,
            renderLimit: fromRequest ? PromptSettings.maximumRequestRenderBytes : nil)
        let fitted = PromptRequest(
            system: request.system ?? PromptSettings.defaultSystem, query: request.search.text ?? "", pinned: pinned,
            memories: memories, recent: recent, budget: request.budget, limit: request.limit, caps: caps,
            format: request.messages ? .messages : .text, spans: request.spans, now: now,
            speakerRoles: request.speakerRoles)
        let built: ContextModel.Prompt
        do throws(PromptError) {
            built = try builder.build(fitted)
        } catch {
            switch error {
            case .budgetTooSmall(let needed, let budget):
                throw ProtocolError(
                    .budgetTooSmall,
                    "the system text and the query alone need \(needed) tokens (\(prompts.counter.name)); the budget is \(budget)",
                    details: ["needed": Int64(needed)])
            case .renderTooLarge(let bound, let limit):
                throw ProtocolError(
                    .tooLarge,
                    "the template could write \(bound) bytes with these memories, more than \(limit); print fewer fields or ask for fewer memories"
                )
            }
        }
        metrics.prompt(tokens: built.tokens, key: session.key ?? "-")
        return Operations.Prompt.Answer(
            prompt: built, counter: prompts.counter.name, sources: Self.sources(of: built.used, in: read))
    }

    /// The standard template, a loaded one by name, or a template's text (anything holding `{{`),
    /// and whether it is the last (its renders then have a limit).
    private func template(_ nameOrText: String?) throws(ProtocolError) -> (PromptTemplate, fromRequest: Bool) {
        guard let nameOrText else { return (.standard, false) }
        if let loaded = prompts.templates[nameOrText] { return (loaded, false) }
        if nameOrText == PromptTemplate.standard.name { return (.standard, false) }
        let names = ([PromptTemplate.standard.name] + prompts.templates.keys.sorted()).joined(separator: ", ")
        guard nameOrText.contains("{{") else {
            throw ProtocolError(.unknownTemplate, "no template named '\(nameOrText)'; this server has \(names)")
        }
        guard prompts.allowRequestTemplates else {
            throw ProtocolError(
                .forbidden,
                "this server takes no template texts in requests (serve --allow-request-templates); name one of \(names)"
            )
        }
        guard nameOrText.utf8.count <= PromptSettings.maximumRequestTemplateBytes else {
            throw ProtocolError(
                .tooLarge,
                "a template in a request may hold \(PromptSettings.maximumRequestTemplateBytes) bytes, not \(nameOrText.utf8.count)"
            )
        }
        do {
            return (try PromptTemplate(name: "template", text: nameOrText), true)
        } catch {
            throw ProtocolError(.invalidValue, "the template does not parse: line \(error.line): \(error.reason)")
        }
    }

    /// The sources of the memories `used` names (of those `read`), each once, in order.
    static func sources(of used: [String], in read: [Memory]) -> [String] {
        var byID: [ExactString: [String]] = [:]
        for memory in read where !memory.sources.isEmpty { byID[ExactString(memory.id)] = memory.sources }
        guard !byID.isEmpty else { return [] }
        var seen: Set<ExactString> = []
        return used.flatMap { byID[ExactString($0)] ?? [] }.filter { seen.insert(ExactString($0)).inserted }
    }

    private static func item(_ memory: Memory, relevance: Double? = nil, vector: [Float]?) -> PromptItem {
        PromptItem(
            id: memory.id, speaker: memory.speaker, role: memory.role?.rawValue, text: memory.text,
            createdAt: memory.createdAt, relevance: relevance, vector: vector.flatMap { $0.isEmpty ? nil : $0 })
    }
}
