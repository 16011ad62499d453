/// How a prompt's tokens are counted.
public enum TokenCounter: Sendable {
    /// Exact: OpenAI's cl100k_base (`BytePairEncoder`).
    case cl100k(BytePairEncoder)
    /// An estimate, named as such: a token per four bytes of UTF-8, rounded up.
    case estimate

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
    public var id: String
    public var speaker: String?
    public var role: String?
    public var text: String
    /// Unix milliseconds.
    public var createdAt: Int64

    public init(id: String, speaker: String? = nil, role: String? = nil, text: String, createdAt: Int64) {
        self.id = id
        self.speaker = speaker
        self.role = role
        self.text = text
        self.createdAt = createdAt
    }
}

/// The parts of a prompt, in the order they appear.
public enum PromptSection: String, Sendable, CaseIterable {
    /// Instructions; never cut.
    case system
    /// Profile facts.
    case pinned
    /// Relevant memories, most relevant first.
    case memories
    /// The current session's latest turns, in time order.
    case recent
    /// The new message; never cut.
    case query
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

    public init(
        system: String, query: String, pinned: [PromptItem] = [], memories: [PromptItem] = [],
        recent: [PromptItem] = [], budget: Int, limit: Int? = nil, caps: [PromptSection: Int] = [:]
    ) {
        self.system = system
        self.query = query
        self.pinned = pinned
        self.memories = memories
        self.recent = recent
        self.budget = budget
        self.limit = limit
        self.caps = caps
    }
}

/// Why an item was left out of a prompt.
public enum DropReason: String, Sendable {
    /// The prompt would have exceeded its budget.
    case budget
    /// Its text is already in the prompt.
    case duplicate
    /// Its section would have exceeded its own cap.
    case sectionCap = "section_cap"
    /// Beyond the request's `limit` of memories.
    case limit
}

/// A built prompt and what went into it.
public struct Prompt: Sendable, Equatable {
    public struct Section: Sendable, Equatable {
        public var name: PromptSection
        public var tokens: Int
        public var ids: [String]
    }

    public struct Dropped: Sendable, Equatable {
        public var id: String
        public var reason: DropReason
    }

    public var text: String
    /// The count of `text`, by the builder's counter.
    public var tokens: Int
    public var sections: [Section]
    /// The ids of the memories and turns in the prompt.
    public var used: [String]
    public var dropped: [Dropped]
}

/// Why no prompt could be built.
public enum PromptError: Error, Equatable {
    /// The system section and the query alone need `needed` tokens, more than the budget.
    case budgetTooSmall(needed: Int, budget: Int)
}

/// Builds prompts that fit a token budget: the system section and the query always whole, then
/// as many pinned facts, memories and recent turns as fit. What does not fit goes in this order:
/// the least relevant memories, then the oldest recent turns, then the last pinned facts; every
/// item left out is reported with its reason. Deterministic: the same request gives the same
/// prompt.
public struct PromptBuilder: Sendable {
    public let counter: TokenCounter
    public let template: PromptTemplate

    public init(counter: TokenCounter, template: PromptTemplate = .standard) {
        self.counter = counter
        self.template = template
    }

    public func build(_ request: PromptRequest) throws(PromptError) -> Prompt {
        var dropped: [Prompt.Dropped] = []
        var parts = Parts(template: template, system: request.system, query: request.query)
        let needed = counter.count(parts.render())
        guard needed <= request.budget else { throw .budgetTooSmall(needed: needed, budget: request.budget) }

        // Each text once: a memory that repeats a pinned fact, a recent turn or an earlier
        // memory adds nothing.
        var seen = Set<String>()
        func isNew(_ item: PromptItem) -> Bool { seen.insert(Self.normalized(item.text)).inserted }
        for item in request.pinned {
            if isNew(item) { parts.pinned.append(item) } else { dropped.append(.init(id: item.id, reason: .duplicate)) }
        }
        for item in request.recent {
            if isNew(item) { parts.recent.append(item) } else { dropped.append(.init(id: item.id, reason: .duplicate)) }
        }
        for item in request.memories {
            guard isNew(item) else {
                dropped.append(.init(id: item.id, reason: .duplicate))
                continue
            }
            if let limit = request.limit, parts.memories.count >= limit {
                dropped.append(.init(id: item.id, reason: .limit))
            } else {
                parts.memories.append(item)
            }
        }
        // Section caps, each section cut from its least valuable end.
        for section in [PromptSection.pinned, .memories, .recent] {
            guard let cap = request.caps[section] else { continue }
            while !parts[section].isEmpty, counter.count(parts.render(only: section)) > cap {
                dropped.append(.init(id: parts.dropLeastValuable(section).id, reason: .sectionCap))
            }
        }
        // The budget: least relevant memories first, then the oldest turns, then pinned facts.
        var text = parts.render()
        var tokens = counter.count(text)
        while tokens > request.budget {
            guard let section = [PromptSection.memories, .recent, .pinned].first(where: { !parts[$0].isEmpty }) else {
                break
            }
            dropped.append(.init(id: parts.dropLeastValuable(section).id, reason: .budget))
            text = parts.render()
            tokens = counter.count(text)
        }
        let sections = PromptSection.allCases.map { section in
            Prompt.Section(
                name: section, tokens: counter.count(parts.render(only: section)), ids: parts[section].map(\.id))
        }
        return Prompt(
            text: text, tokens: tokens, sections: sections,
            used: (parts.pinned + parts.memories + parts.recent).map(\.id), dropped: dropped)
    }

    /// A text as compared for duplicates: lower-cased, runs of whitespace as one space.
    static func normalized(_ text: String) -> String {
        text.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// The prompt's content as it is being fitted, and its rendering.
    struct Parts {
        var template: PromptTemplate
        var system: String
        var query: String
        var pinned: [PromptItem] = []
        var memories: [PromptItem] = []
        var recent: [PromptItem] = []

        subscript(section: PromptSection) -> [PromptItem] {
            switch section {
            case .pinned: pinned
            case .memories: memories
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

        /// The whole prompt, or the template rendered with one section alone (what a section's
        /// cap and its count in the answer measure).
        func render(only: PromptSection? = nil) -> String {
            guard let only else { return template.render(self) }
            var alone = Parts(
                template: template, system: only == .system ? system : "", query: only == .query ? query : "")
            switch only {
            case .pinned: alone.pinned = pinned
            case .memories: alone.memories = memories
            case .recent: alone.recent = recent
            case .system, .query: break
            }
            return template.render(alone)
        }
    }
}
