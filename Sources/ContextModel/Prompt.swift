// A built prompt, as the prompt builder makes it and the wire carries it (the `prompt` op).

/// The parts of a prompt, in the order they appear.
public enum PromptSection: String, Sendable, CaseIterable {
    /// Instructions; never cut.
    case system
    /// Profile facts.
    case pinned
    /// Relevant memories, most relevant first.
    case memories
    /// Sentences from the session's older turns that did not fit, marked as a summary.
    case summary
    /// The current session's latest turns, in time order.
    case recent
    /// The new message; never cut.
    case query
}

/// One message of a chat-message prompt.
public struct PromptMessage: Sendable, Equatable {
    /// `system`, `user` or `assistant`.
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Why an item was left out of a prompt.
public enum DropReason: String, Sendable {
    /// The prompt would have exceeded its budget.
    case budget
    /// Its text, or nearly its meaning, is already in the prompt.
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
        /// Its tokens, rendered alone.
        public var tokens: Int
        /// The items in it; for the summary, the turns its sentences come from.
        public var ids: [String]

        public init(name: PromptSection, tokens: Int, ids: [String]) {
            self.name = name
            self.tokens = tokens
            self.ids = ids
        }
    }

    /// Where a part of the prompt is in `text`: `start..<end` in UTF-8 bytes.
    public struct Span: Sendable, Equatable {
        public var section: PromptSection
        public var start: Int
        public var end: Int

        public init(section: PromptSection, start: Int, end: Int) {
            self.section = section
            self.start = start
            self.end = end
        }
    }

    public struct Dropped: Sendable, Equatable {
        public var id: String
        public var reason: DropReason

        public init(id: String, reason: DropReason) {
            self.id = id
            self.reason = reason
        }
    }

    public var text: String
    /// The chat messages, when they were asked for.
    public var messages: [PromptMessage]?
    /// What the prompt costs: the count of `text`; for messages, the larger of that and the
    /// messages' count (their contents, plus 4 a message and 3 to prime the reply, as OpenAI's
    /// chat models count them).
    public var tokens: Int
    public var sections: [Section]
    /// The ids of the memories and turns in the prompt.
    public var used: [String]
    /// Items left out, in the order they were; a turn summarized is among them.
    public var dropped: [Dropped]
    /// Where the system text, each item's text and the query are in `text`, in order, when they
    /// were asked for (nil too when a text holds the characters that mark them: see
    /// `PromptBuilder`).
    public var spans: [Span]?

    public init(
        text: String, messages: [PromptMessage]?, tokens: Int, sections: [Section], used: [String], dropped: [Dropped],
        spans: [Span]? = nil
    ) {
        self.spans = spans
        self.text = text
        self.messages = messages
        self.tokens = tokens
        self.sections = sections
        self.used = used
        self.dropped = dropped
    }
}
