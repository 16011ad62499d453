import ContextModel

extension Operations {
    /// `prompt`: a prompt for a user's new message within a token budget, built from the user's
    /// pinned facts, the memories a search finds, and the current session's latest turns; with a
    /// report of what went in and what was left out, and why.
    public enum Prompt: WireOperation {
        public struct Arguments: Sendable, Equatable {
            /// The most tokens a prompt may be given.
            public static let maximumBudget = 1_000_000
            public static let defaultBudget = 2048
            /// The most memories a prompt may ask for.
            public static let maximumLimit = 100
            /// As many as the budget holds: the default is the cap (a trial found a 1,000-token
            /// budget half used at 10, and fewer questions with their evidence all in the prompt).
            public static let defaultLimit = maximumLimit
            /// The most recent turns a prompt may ask for.
            public static let maximumRecent = 200
            public static let defaultRecent = 10
            /// The sections a cap may name.
            public static let cappedSections: Set<String> = ["pinned", "memories", "summary", "recent"]

            /// The retrieval: user, the query (`text`, and `vector` when the client embedded it),
            /// mode, filters (never a session: see `session`), half_life, context, ef, exact.
            public var search: SearchRequest
            /// The current conversation, whose latest turns the prompt shows verbatim.
            public var session: String?
            public var budget: Int
            /// A template's name (as `serve --templates` loaded it), or a template's text (any
            /// value holding `{{`); nil for the standard template.
            public var template: String?
            /// The instructions; nil for the server's default.
            public var system: String?
            /// The most memories; 0 for none.
            public var limit: Int
            /// The most turns of `session`.
            public var recent: Int
            /// Chat messages as well as the text.
            public var messages: Bool
            /// Tokens a section may use at most, by section name.
            public var caps: [String: Int]
            /// Whether the answer says where each part is in the prompt (`spans`).
            public var spans: Bool
            /// In `messages`, the dialogue's speakers as alternating roles (`speaker_roles`).
            public var speakerRoles: Bool
            /// Each memory that superseded another shows what held before (`show_changes`).
            public var showChanges: Bool

            public init(
                search: SearchRequest, session: String? = nil, budget: Int = Arguments.defaultBudget,
                template: String? = nil, system: String? = nil, limit: Int = Arguments.defaultLimit,
                recent: Int = Arguments.defaultRecent, messages: Bool = false, caps: [String: Int] = [:],
                spans: Bool = false, speakerRoles: Bool = false, showChanges: Bool = false
            ) {
                self.spans = spans
                self.speakerRoles = speakerRoles
                self.showChanges = showChanges
                self.search = search
                self.session = session
                self.budget = budget
                self.template = template
                self.system = system
                self.limit = limit
                self.recent = recent
                self.messages = messages
                self.caps = caps
            }
        }

        /// The prompt, and how its tokens were counted.
        public struct Answer: Sendable, Equatable {
            public var prompt: ContextModel.Prompt
            /// `cl100k_base`, or `estimate`.
            public var counter: String
            /// The sources of the memories it used, each once, in the order they were first
            /// named (`used`'s order); absent from the answer when there are none.
            public var sources: [String]

            public init(prompt: ContextModel.Prompt, counter: String, sources: [String] = []) {
                self.prompt = prompt
                self.counter = counter
                self.sources = sources
            }
        }

        public static let name = "prompt"
        public static let requestFields =
            [FieldSpec.user]
            + FieldSpec.filter.map { field in
                var field = field
                if field.name == "session" {
                    field.summary = "the current conversation: its latest turns go in verbatim"
                }
                return field
            }
            + FieldSpec.retrieval.map { field in
                var field = field
                if field.name == "query" {
                    field.required = true
                    field.summary = "the new message"
                }
                return field
            } + [
                FieldSpec(
                    "budget", .integer, minimum: 1, maximum: Double(Arguments.maximumBudget),
                    default: String(Arguments.defaultBudget), "tokens the prompt may use"),
                FieldSpec(
                    "template", .string,
                    "a template the server loaded, or (with `serve --allow-request-templates`) a template's text"),
                FieldSpec("system", .string, "the instructions; the server's when absent"),
                FieldSpec(
                    "limit", .integer, minimum: 0, maximum: Double(Arguments.maximumLimit),
                    default: String(Arguments.defaultLimit),
                    "memories at most (0: no search); by default as many as the budget holds"),
                FieldSpec(
                    "recent", .integer, minimum: 0, maximum: Double(Arguments.maximumRecent),
                    default: String(Arguments.defaultRecent), "turns of `session`"),
                FieldSpec(
                    "format", .choice, choices: ["text", "messages"], default: "\"text\"",
                    "`messages`: also a chat-message list"),
                FieldSpec(
                    "caps", .object, "tokens a section may use at most: `pinned`, `memories`, `summary`, `recent`"),
                FieldSpec(
                    "show_changes", .boolean, default: "false",
                    "a memory that superseded another also shows what held before, and until when"),
                FieldSpec(
                    "speaker_roles", .boolean, default: "false",
                    "with `messages`: the dialogue's first speaker speaks as `user`, the second as `assistant`, and so on"
                ),
                FieldSpec(
                    "spans", .boolean, default: "false",
                    "also where the system text, each memory's or turn's text and the query are in `prompt` (UTF-8 bytes)"
                ),
            ]
        public static let fields = FieldSpec.names(requestFields)

        public static func encode(_ arguments: Arguments, to writer: inout JSONWriter) {
            writer.field("user")
            writer.string(arguments.search.user)
            Search.writeOptions(arguments.search, to: &writer)
            if let session = arguments.session {
                writer.field("session")
                writer.string(session)
            }
            writer.field("budget")
            writer.int(Int64(arguments.budget))
            if let template = arguments.template {
                writer.field("template")
                writer.string(template)
            }
            if let system = arguments.system {
                writer.field("system")
                writer.string(system)
            }
            writer.field("limit")
            writer.int(Int64(arguments.limit))
            writer.field("recent")
            writer.int(Int64(arguments.recent))
            if arguments.messages {
                writer.field("format")
                writer.string("messages")
            }
            if !arguments.caps.isEmpty {
                writer.field("caps")
                writer.raw(UInt8(ascii: "{"))
                for (i, (name, cap)) in arguments.caps.sorted(by: { $0.key < $1.key }).enumerated() {
                    if i > 0 { writer.raw(UInt8(ascii: ",")) }
                    writer.key(name)
                    writer.int(Int64(cap))
                }
                writer.raw(UInt8(ascii: "}"))
            }
            if arguments.spans {
                writer.field("spans")
                writer.bool(true)
            }
            if arguments.speakerRoles {
                writer.field("speaker_roles")
                writer.bool(true)
            }
            if arguments.showChanges {
                writer.field("show_changes")
                writer.bool(true)
            }
        }

        public static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments {
            try request.requireKnownFields(fields)
            guard request["query"] != nil, request["query"] != .null else {
                throw ProtocolError(.missingField, "missing field 'query' (the new message)")
            }
            // The search's filters are the user's; `session` names the current conversation.
            var search = try Search.readOptions(request, k: SearchRequest.defaultK)
            let session = search.filter.rows.session
            search.filter.rows.session = nil
            let format = try request.optionalString("format") ?? "text"
            guard format == "text" || format == "messages" else {
                throw ProtocolError(.invalidValue, "format must be text or messages, not '\(format)'")
            }
            return Arguments(
                search: search, session: session,
                budget: try request.bounded("budget", 1, Arguments.maximumBudget, default: Arguments.defaultBudget),
                template: try request.optionalString("template"), system: try request.optionalString("system"),
                limit: try request.bounded("limit", 0, Arguments.maximumLimit, default: Arguments.defaultLimit),
                recent: try request.bounded("recent", 0, Arguments.maximumRecent, default: Arguments.defaultRecent),
                messages: format == "messages", caps: try caps(request),
                spans: try request.optionalBool("spans") ?? false,
                speakerRoles: try request.optionalBool("speaker_roles") ?? false,
                showChanges: try request.optionalBool("show_changes") ?? false)
        }

        private static func caps(_ request: JSONObject) throws(ProtocolError) -> [String: Int] {
            guard let value = request["caps"], value != .null else { return [:] }
            guard let object = value.objectValue else {
                throw ProtocolError(
                    .wrongType, "'caps' must be an object of section names to tokens, not \(value.typeName)")
            }
            var caps: [String: Int] = [:]
            for (name, _) in object.fields {
                guard Arguments.cappedSections.contains(name) else {
                    throw ProtocolError(
                        .unknownField,
                        "unknown field 'caps.\(name)'; a cap names one of \(Arguments.cappedSections.sorted().joined(separator: ", "))"
                    )
                }
                caps[name] = try object.bounded(name, 0, Arguments.maximumBudget, default: 0, path: "caps.\(name)")
            }
            return caps
        }

        public static func encode(answer: Answer, to writer: inout JSONWriter) {
            let prompt = answer.prompt
            writer.field("prompt")
            writer.string(prompt.text)
            if let messages = prompt.messages {
                writer.field("messages")
                writer.array(count: messages.count) { writer, i in
                    writer.raw("{\"role\":")
                    writer.string(messages[i].role)
                    writer.field("content")
                    writer.string(messages[i].content)
                    writer.raw(UInt8(ascii: "}"))
                }
            }
            writer.field("tokens")
            writer.int(Int64(prompt.tokens))
            writer.field("counter")
            writer.string(answer.counter)
            writer.field("sections")
            writer.array(count: prompt.sections.count) { writer, i in
                let section = prompt.sections[i]
                writer.raw("{\"name\":")
                writer.string(section.name.rawValue)
                writer.field("tokens")
                writer.int(Int64(section.tokens))
                writer.field("ids")
                writer.array(count: section.ids.count) { $0.string(section.ids[$1]) }
                writer.raw(UInt8(ascii: "}"))
            }
            writer.field("used")
            writer.array(count: prompt.used.count) { $0.string(prompt.used[$1]) }
            writer.field("dropped")
            writer.array(count: prompt.dropped.count) { writer, i in
                writer.raw("{\"id\":")
                writer.string(prompt.dropped[i].id)
                writer.field("reason")
                writer.string(prompt.dropped[i].reason.rawValue)
                writer.raw(UInt8(ascii: "}"))
            }
            if !answer.sources.isEmpty {
                writer.field("sources")
                writer.array(count: answer.sources.count) { $0.string(answer.sources[$1]) }
            }
            if let spans = prompt.spans {
                writer.field("spans")
                writer.array(count: spans.count) { writer, i in
                    writer.raw("{\"section\":")
                    writer.string(spans[i].section.rawValue)
                    writer.field("start")
                    writer.int(Int64(spans[i].start))
                    writer.field("end")
                    writer.int(Int64(spans[i].end))
                    writer.raw(UInt8(ascii: "}"))
                }
            }
        }

        public static func decode(answer: JSONObject) throws(ProtocolError) -> Answer {
            func named<T: RawRepresentable<String>>(_ object: JSONObject, _ key: String) throws(ProtocolError) -> T {
                let name = try object.required(key, as: "string", \.stringValue)
                guard let value = T(rawValue: name) else {
                    throw ProtocolError(.invalidValue, "'\(name)' is no \(key) this client knows")
                }
                return value
            }
            let messages: [PromptMessage]? =
                answer["messages"] == nil
                ? nil
                : try answer.objects("messages").map { (object) throws(ProtocolError) in
                    PromptMessage(
                        role: try object.required("role", as: "string", \.stringValue),
                        content: try object.required("content", as: "string", \.stringValue))
                }
            let prompt = ContextModel.Prompt(
                text: try answer.required("prompt", as: "string", \.stringValue), messages: messages,
                tokens: Int(try answer.required("tokens", as: "integer", \.integerValue)),
                sections: try answer.objects("sections").map { (object) throws(ProtocolError) in
                    ContextModel.Prompt.Section(
                        name: try named(object, "name"),
                        tokens: Int(try object.required("tokens", as: "integer", \.integerValue)),
                        ids: try object.strings("ids"))
                }, used: try answer.strings("used"),
                dropped: try answer.objects("dropped").map { (object) throws(ProtocolError) in
                    ContextModel.Prompt.Dropped(
                        id: try object.required("id", as: "string", \.stringValue), reason: try named(object, "reason"))
                },
                spans: answer["spans"] == nil
                    ? nil
                    : try answer.objects("spans").map { (object) throws(ProtocolError) in
                        ContextModel.Prompt.Span(
                            section: try named(object, "section"),
                            start: Int(try object.required("start", as: "integer", \.integerValue)),
                            end: Int(try object.required("end", as: "integer", \.integerValue)))
                    })
            return Answer(
                prompt: prompt, counter: try answer.required("counter", as: "string", \.stringValue),
                sources: answer["sources"] == nil ? [] : try answer.strings("sources"))
        }
    }
}

extension JSONObject {
    /// An optional integer field inside `minimum...maximum`.
    /// - Throws: `wrong_type` for a non-integer, `invalid_value` outside the range.
    func bounded(_ key: String, _ minimum: Int, _ maximum: Int, default value: Int, path: String? = nil)
        throws(ProtocolError) -> Int
    {
        guard let field = self[key], field != .null else { return value }
        guard let number = field.integerValue else {
            throw ProtocolError(.wrongType, "'\(path ?? key)' must be an integer, not \(field.typeName)")
        }
        guard (Int64(minimum)...Int64(maximum)).contains(number) else {
            throw ProtocolError(
                .invalidValue, "'\(path ?? key)' must be between \(minimum) and \(maximum), not \(number)")
        }
        return Int(number)
    }
}
