import ContextModel

/// How a prompt's tokens are counted.
public enum TokenCounter: Sendable {
    /// Exact: OpenAI's cl100k_base (`BytePairEncoder`).
    case cl100k(BytePairEncoder)
    /// An estimate, named as such: a token per four bytes of UTF-8, rounded up.
    case estimate

    /// The counter's name as the wire and the docs give it.
    public var name: String {
        switch self {
        case .cl100k: "cl100k_base"
        case .estimate: "estimate"
        }
    }

    public func count(_ text: String) -> Int {
        switch self {
        case .cl100k(let encoder): encoder.count(text)
        case .estimate: (text.utf8.count + 3) / 4
        }
    }
}

/// A memory or a conversation turn a prompt may hold: who said it and when, for a model
/// answering "when did Caroline ..." needs both.
public struct PromptItem: Sendable, Equatable {
    public static func == (a: PromptItem, b: PromptItem) -> Bool {
        (a.id, a.speaker, a.role, a.text, a.createdAt, a.relevance) == (
            b.id, b.speaker, b.role, b.text, b.createdAt, b.relevance
        ) && a.vector == b.vector && a.before?.text == b.before?.text && a.before?.until == b.before?.until
    }

    public var id: String
    public var speaker: String?
    public var role: String?
    public var text: String
    /// Unix milliseconds.
    public var createdAt: Int64
    /// How relevant a memory is to the query (the search's score, higher is better); nil: its
    /// place in the list says it.
    public var relevance: Double?
    /// Its embedding, unit length; with it, near-duplicates are found.
    public var vector: [Float]?
    /// What it replaced (a fact that changed), when the prompt shows changes: the old text and
    /// when it stopped holding (unix ms).
    public var before: (text: String, until: Int64)?

    public init(
        id: String, speaker: String? = nil, role: String? = nil, text: String, createdAt: Int64,
        relevance: Double? = nil, vector: [Float]? = nil, before: (text: String, until: Int64)? = nil
    ) {
        self.before = before
        self.id = id
        self.speaker = speaker
        self.role = role
        self.text = text
        self.createdAt = createdAt
        self.relevance = relevance
        self.vector = vector
    }
}

/// How a prompt is handed to the model.
public enum PromptFormat: String, Sendable, CaseIterable {
    /// One text.
    case text
    /// A chat-message list: a system message (the template without the recent turns and the
    /// query), one message per recent turn, and the query as the last user message.
    case messages
}

/// What a prompt is built from.
public struct PromptRequest: Sendable {
    public var system: String
    public var query: String
    public var pinned: [PromptItem]
    /// Most relevant first.
    public var memories: [PromptItem]
    /// Oldest first.
    public var recent: [PromptItem]
    /// Tokens the whole prompt may use.
    public var budget: Int
    /// The most memories the prompt holds; nil: no limit but the budget.
    public var limit: Int?
    /// Tokens a section may use at most, where set.
    public var caps: [PromptSection: Int]
    public var format: PromptFormat
    /// Whether the answer says where each part is in the text (`Prompt.spans`).
    public var spans: Bool
    /// When the prompt is built (unix ms): what a template's `now` shows.
    public var now: Int64
    /// In `messages`, the dialogue's speakers as alternating roles: the first to speak as
    /// `user`, the second as `assistant`, the third as `user` again, and so on; a turn without a
    /// speaker keeps its role. Otherwise a turn is an `assistant` message when its role is.
    public var speakerRoles: Bool

    public init(
        system: String, query: String, pinned: [PromptItem] = [], memories: [PromptItem] = [],
        recent: [PromptItem] = [], budget: Int, limit: Int? = nil, caps: [PromptSection: Int] = [:],
        format: PromptFormat = .text, spans: Bool = false, now: Int64 = Clock.nowMilliseconds(),
        speakerRoles: Bool = false
    ) {
        self.spans = spans
        self.now = now
        self.speakerRoles = speakerRoles
        self.system = system
        self.query = query
        self.pinned = pinned
        self.memories = memories
        self.recent = recent
        self.budget = budget
        self.limit = limit
        self.caps = caps
        self.format = format
    }
}

/// Why no prompt could be built.
public enum PromptError: Error, Equatable {
    /// The system section and the query alone need `needed` tokens, more than the budget.
    case budgetTooSmall(needed: Int, budget: Int)
    /// The template could write up to `bound` bytes with these parts, more than `limit`.
    case renderTooLarge(bound: Int, limit: Int)
}

/// Builds prompts that fit a token budget: the system section and the query always whole, then
/// as many pinned facts, memories and recent turns as fit. What does not fit goes in this order:
/// the least relevant memories, then the oldest recent turns (whose most central sentences then
/// fill what room is left, as a summary), then the last pinned facts; every item left out is
/// reported with its reason. Deterministic: the same request gives the same prompt.
public struct PromptBuilder: Sendable {
    /// Tokens a chat message costs besides its content (role and separators).
    public static let messageOverhead = 4
    /// Tokens a chat prompt costs to prime the reply.
    public static let replyPriming = 3

    public let counter: TokenCounter
    public let template: PromptTemplate
    /// Embeds sentences for the summary of dropped turns; without it, dropped turns are only
    /// reported.
    public let embed: (@Sendable ([String]) -> [[Float]])?
    /// The most bytes the template may write in one render (`PromptTemplate.renderBound`, checked
    /// before the first); nil: no limit, for templates the operator wrote.
    public let renderLimit: Int?

    public init(
        counter: TokenCounter, template: PromptTemplate = .standard,
        embed: (@Sendable ([String]) -> [[Float]])? = nil, renderLimit: Int? = nil
    ) {
        self.counter = counter
        self.template = template
        self.embed = embed
        self.renderLimit = renderLimit
    }

    public func build(_ request: PromptRequest) throws(PromptError) -> Prompt {
        var parts = Parts(
            template: template, system: request.system, query: request.query, now: request.now,
            speakerRoles: request.speakerRoles)
        let tally = TokenTally(counter)
        let needed = cost(parts, request.format, tally)
        guard needed <= request.budget else { throw .budgetTooSmall(needed: needed, budget: request.budget) }

        var dropped: [Prompt.Dropped] = []
        let selection = MemorySelection.select(request)
        parts.pinned = selection.pinned
        parts.recent = selection.recent
        parts.memories = selection.memories
        dropped += selection.dropped
        if let renderLimit {
            // Every render is of fewer items than these; the summary is sentences of recent turns.
            var largest = parts
            largest.summary = parts.recent
            let bound = template.renderBound(largest)
            guard bound <= renderLimit else { throw .renderTooLarge(bound: bound, limit: renderLimit) }
        }

        // Section caps, each section cut from its least valuable end.
        var cutTurns: [PromptItem] = []
        for section in [PromptSection.pinned, .memories, .recent] {
            guard let cap = request.caps[section] else { continue }
            while !parts[section].isEmpty, tally.count(parts.render(only: section)) > cap {
                let item = parts.dropLeastValuable(section)
                if section == .recent { cutTurns.append(item) }
                dropped.append(.init(id: item.id, reason: .sectionCap))
            }
        }
        // The budget: least relevant memories first, then the oldest turns, then pinned facts.
        let order = parts.dropOrder
        let (enough, rendered) = fewestDrops(parts, order: order, request: request, tally: tally)
        let removed = order.prefix(enough)
        parts = parts.dropping(enough)
        dropped += removed.map { .init(id: $0.item.id, reason: .budget) }
        cutTurns = (cutTurns + removed.filter { $0.section == .recent }.map(\.item)).sorted {
            $0.createdAt < $1.createdAt
        }

        if let embed, !cutTurns.isEmpty {
            parts.summary = summary(of: cutTurns, embed: embed, into: parts, request: request, tally: tally)
        }
        let text = parts.summary.isEmpty ? rendered ?? parts.render() : parts.render()
        return finished(parts, text: text, request: request, dropped: dropped, tally: tally)
    }

    /// How many items of `order` must go for `parts` to fit the budget. Dropping more never
    /// makes a prompt longer, so the answer is bracketed and bisected, starting from an estimate
    /// of each item's share, so a few exact counts of the whole prompt suffice.
    /// All of them dropped always fits (`build` checked it).
    /// - Returns: The count, and the prompt rendered with them dropped when it was.
    private func fewestDrops(
        _ parts: Parts, order: [(section: PromptSection, item: PromptItem)], request: PromptRequest, tally: TokenTally
    ) -> (drops: Int, rendered: String?) {
        var rendered: [Int: String] = [:]
        func cost(_ drops: Int) -> Int {
            let dropped = parts.dropping(drops)
            let text = dropped.render()
            rendered[drops] = text
            return tokens(of: text, request.format == .messages ? dropped.messages() : nil, tally)
        }
        func fits(_ drops: Int) -> Bool { cost(drops) <= request.budget }
        var whole = cost(0)
        guard whole > request.budget else { return (0, rendered[0]) }
        var guess = 0
        while guess < order.count, whole > request.budget {
            // About its text (4 bytes a token), its date and who said it: only a first guess.
            whole -= order[guess].item.text.utf8.count / 4 + 10
            guess += 1
        }
        // A bracket: `tooFew` does not fit (or is -1), `enough` fits (or is every item).
        var (tooFew, enough) = (guess - 1, guess)
        if fits(guess) {
            var step = 1
            while tooFew >= 0, fits(tooFew) {
                enough = tooFew
                tooFew -= step
                step *= 2
            }
            tooFew = max(tooFew, -1)
        } else {
            (tooFew, enough) = (guess, guess + 1)
            var step = 1
            while enough < order.count, !fits(enough) {
                tooFew = enough
                step *= 2
                enough += step
            }
            enough = min(enough, order.count)
        }
        while enough - tooFew > 1 {
            let middle = (tooFew + enough) / 2
            if fits(middle) { enough = middle } else { tooFew = middle }
        }
        return (enough, rendered[enough])
    }

    /// The most sentences of `turns`, most central first, that fit in what the budget leaves.
    private func summary(
        of turns: [PromptItem], embed: @Sendable ([String]) -> [[Float]], into parts: Parts, request: PromptRequest,
        tally: TokenTally
    ) -> [PromptItem] {
        let ranked = ExtractiveSummary.rank(turns, embed: embed)
        func taking(_ n: Int) -> Parts {
            var parts = parts
            parts.summary = ranked.prefix(n).sorted { $0.position < $1.position }.map(\.sentence)
            return parts
        }
        // Within the budget and the summary's own cap, if it has one.
        func fitting(_ n: Int) -> Bool {
            let candidate = taking(n)
            if let cap = request.caps[.summary], tally.count(candidate.render(only: .summary)) > cap { return false }
            return cost(candidate, request.format, tally) <= request.budget
        }
        var (fits, tooMany) = (0, ranked.count + 1)
        while tooMany - fits > 1 {
            let middle = (fits + tooMany) / 2
            if fitting(middle) { fits = middle } else { tooMany = middle }
        }
        return taking(fits).summary
    }

    private func finished(
        _ parts: Parts, text: String, request: PromptRequest, dropped: [Prompt.Dropped], tally: TokenTally
    ) -> Prompt {
        let messages = request.format == .messages ? parts.messages() : nil
        // Ids in the order the text shows them (memories by day).
        var shown = parts
        shown.memories = PromptTemplate.byDay(parts.memories)
        let sections = PromptSection.allCases.map { section in
            let ids = section == .summary ? Self.unique(parts.summary.map(\.id)) : shown[section].map(\.id)
            // An empty section takes nothing (alone, the template would show only its fixed text).
            let empty = parts[section].isEmpty && section != .system && section != .query
            return Prompt.Section(name: section, tokens: empty ? 0 : tally.count(parts.render(only: section)), ids: ids)
        }
        return Prompt(
            text: text, messages: messages, tokens: tokens(of: text, messages, tally), sections: sections,
            used: (parts.pinned + shown.memories + parts.recent).map(\.id), dropped: dropped,
            spans: request.spans ? parts.spans(of: text) : nil)
    }

    private static func unique(_ ids: [String]) -> [String] {
        var seen = Set<String>()
        return ids.filter { seen.insert($0).inserted }
    }

    /// What `parts` cost in `format` (see `Prompt.tokens`).
    func cost(_ parts: Parts, _ format: PromptFormat, _ tally: TokenTally? = nil) -> Int {
        tokens(of: parts.render(), format == .messages ? parts.messages() : nil, tally ?? TokenTally(counter))
    }

    private func tokens(of text: String, _ messages: [PromptMessage]?, _ tally: TokenTally) -> Int {
        guard let messages else { return tally.count(text) }
        let contents = messages.reduce(0) { $0 + tally.count($1.content) }
        return max(tally.count(text), contents + messages.count * Self.messageOverhead + Self.replyPriming)
    }

    /// A text as compared for duplicates: lower-cased, runs of white space as one space, none at
    /// either end. ASCII text is done byte by byte (the same result, without Unicode tables).
    static func normalized(_ text: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var space = false
        for byte in text.utf8 {
            guard byte < 0x80 else {
                return text.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
            }
            if byte == 0x20 || (0x09...0x0D).contains(byte) {
                space = !bytes.isEmpty
                continue
            }
            if space { bytes.append(0x20) }
            space = false
            bytes.append((0x41...0x5A).contains(byte) ? byte + 0x20 : byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The prompt's content as it is being fitted, and its rendering.
    struct Parts {
        var template: PromptTemplate
        var system: String
        var query: String
        /// Unix ms (`PromptRequest.now`).
        var now: Int64 = 0
        var speakerRoles = false
        var pinned: [PromptItem] = []
        var memories: [PromptItem] = []
        var summary: [PromptItem] = []
        var recent: [PromptItem] = []

        subscript(section: PromptSection) -> [PromptItem] {
            switch section {
            case .pinned: pinned
            case .memories: memories
            case .summary: summary
            case .recent: recent
            case .system, .query: []
            }
        }

        /// Removes and returns the section's least valuable item: the least relevant memory,
        /// the oldest turn, the last pinned fact.
        mutating func dropLeastValuable(_ section: PromptSection) -> PromptItem {
            switch section {
            case .memories: memories.removeLast()
            case .recent: recent.removeFirst()
            default: pinned.removeLast()
            }
        }

        /// Every item in the order the budget drops them.
        var dropOrder: [(section: PromptSection, item: PromptItem)] {
            memories.reversed().map { (.memories, $0) } + recent.map { (.recent, $0) }
                + pinned.reversed().map { (.pinned, $0) }
        }

        /// These parts without the first `count` items of their `dropOrder`.
        func dropping(_ count: Int) -> Parts {
            var parts = self
            let memories = min(count, self.memories.count)
            let turns = min(count - memories, recent.count)
            parts.memories.removeLast(memories)
            parts.recent.removeFirst(turns)
            parts.pinned.removeLast(count - memories - turns)
            return parts
        }

        /// The whole prompt, or the template rendered with one section alone (what a section's
        /// cap and its count in the answer measure).
        func render(only: PromptSection? = nil) -> String {
            guard let only else { return template.render(self) }
            var alone = Parts(
                template: template, system: only == .system ? system : "", query: only == .query ? query : "",
                now: now, speakerRoles: speakerRoles)
            switch only {
            case .pinned: alone.pinned = pinned
            case .memories: alone.memories = memories
            case .summary: alone.summary = summary
            case .recent: alone.recent = recent
            case .system, .query: break
            }
            return template.render(alone)
        }

        /// Where the system text, each item's text and the query are in `text` (their
        /// rendering), in UTF-8 bytes: the parts are rendered again with each of those texts
        /// between two noncharacters (U+FDD0 and a section's mark before, U+FDEF after), which
        /// are then taken out. Nil when that is not `text` again: a text held the marks, or the
        /// template showed a text in a way that split its marks.
        func spans(of text: String) -> [Prompt.Span]? {
            // (Noncharacters cannot be written as literals.)
            let open = Unicode.Scalar(UInt32(0xFDD0))!
            let close = Unicode.Scalar(UInt32(0xFDEF))!
            let sections = PromptSection.allCases
            // U+FDD1, U+FDD2, ...: the section's mark.
            func mark(_ section: PromptSection) -> Unicode.Scalar {
                Unicode.Scalar(0xFDD1 + UInt32(sections.firstIndex(of: section)!))!
            }
            func marked(_ text: String, _ section: PromptSection) -> String {
                text.isEmpty ? text : String(open) + String(mark(section)) + text + String(close)
            }
            func marked(_ items: [PromptItem], _ section: PromptSection) -> [PromptItem] {
                items.map { item in
                    var item = item
                    item.text = marked(item.text, section)
                    return item
                }
            }
            var copy = self
            copy.system = marked(system, .system)
            copy.query = marked(query, .query)
            copy.pinned = marked(pinned, .pinned)
            copy.memories = marked(memories, .memories)
            copy.summary = marked(summary, .summary)
            copy.recent = marked(recent, .recent)
            var spans: [Prompt.Span] = []
            var plain = String.UnicodeScalarView()
            var offset = 0
            var current: (section: PromptSection, start: Int)?
            var scalars = copy.render().unicodeScalars.makeIterator()
            while let scalar = scalars.next() {
                switch scalar {
                case open:
                    guard current == nil, let code = scalars.next(), code.value >= 0xFDD1,
                        Int(code.value - 0xFDD1) < sections.count
                    else { return nil }
                    current = (sections[Int(code.value - 0xFDD1)], offset)
                case close:
                    guard let started = current else { return nil }
                    spans.append(Prompt.Span(section: started.section, start: started.start, end: offset))
                    current = nil
                default:
                    plain.append(scalar)
                    offset += UTF8.width(scalar)
                }
            }
            guard current == nil, String(plain) == text else { return nil }
            return spans
        }

        /// The chat messages: the template without recent turns and query as the system
        /// message, each turn as its role's message (speaker first where there is one; roles by
        /// speaker with `speakerRoles`), and the query as the last user message.
        func messages() -> [PromptMessage] {
            var head = self
            head.recent = []
            head.query = ""
            var messages: [PromptMessage] = []
            let system = head.render().trimmingWhitespace
            if !system.isEmpty { messages.append(PromptMessage(role: "system", content: system)) }
            // The order in which speakers first speak (for `speakerRoles`).
            var order: [String: Int] = [:]
            for turn in recent {
                var role = turn.role == "assistant" ? "assistant" : "user"
                if speakerRoles, let speaker = turn.speaker {
                    let place = order[speaker] ?? order.count
                    order[speaker] = place
                    role = place % 2 == 0 ? "user" : "assistant"
                }
                messages.append(
                    PromptMessage(role: role, content: turn.speaker.map { "\($0): " + turn.text } ?? turn.text))
            }
            messages.append(PromptMessage(role: "user", content: query))
            return messages
        }
    }
}
