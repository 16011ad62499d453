import ContextModel
import Foundation
import PropertyBased
import Testing

@testable import PromptBuilder

@Suite struct PromptBuilderTests {
    func item(_ id: String, _ text: String, minute: Int64 = 0, speaker: String? = "Ana") -> PromptItem {
        PromptItem(id: id, speaker: speaker, text: text, createdAt: 1_683_504_000_000 + minute * 60_000)
    }

    var builder: PromptBuilder { PromptBuilder(counter: sharedEncoder.map(TokenCounter.cl100k) ?? .estimate) }

    @Test func everythingFitsAndIsRenderedWithWhoAndWhen() throws {
        let prompt = try builder.build(
            PromptRequest(
                system: "Answer from the memories.", query: "Where does Ana's sister live?",
                pinned: [item("p1", "Ana is vegetarian")],
                // Most relevant first: the day of m1 comes first, and shows its memories in the
                // order they were said.
                memories: [
                    item("m1", "My sister moved to Porto", minute: 3),
                    item("m3", "It rained all day", minute: 24 * 60 + 5, speaker: "Bea"),
                    item("m2", "I like tea", minute: 1),
                ],
                recent: [item("r1", "Hi!", minute: 9, speaker: nil)], budget: 1000))
        #expect(
            prompt.text == """
                Answer from the memories.

                Known facts:
                - [8 May 2023] Ana: Ana is vegetarian

                Relevant memories:
                8 May 2023:
                - Ana: I like tea
                - Ana: My sister moved to Porto
                9 May 2023:
                - Bea: It rained all day

                Conversation:
                [8 May 2023] Hi!

                Where does Ana's sister live?
                """)
        // Ids in the order the text shows them.
        #expect(prompt.used == ["p1", "m2", "m1", "m3", "r1"] && prompt.dropped.isEmpty)
        #expect(prompt.tokens == builder.counter.count(prompt.text))
        #expect(prompt.sections.map(\.name) == PromptSection.allCases)
        #expect(prompt.sections.first { $0.name == .memories }?.ids == ["m2", "m1", "m3"])
    }

    /// Dropped for the budget are the least relevant memories, whatever their day: the order
    /// shown is not the order fitted.
    @Test func memoriesShownByDayAreStillDroppedLeastRelevantFirst() throws {
        let memories = (0..<12).map { n in
            item("m\(n)", "memory \(n) of the garden", minute: Int64(n % 3) * 24 * 60 + Int64(n))
        }
        let whole = try builder.build(PromptRequest(system: "", query: "Q", memories: memories, budget: 1000))
        #expect(whole.text.components(separatedBy: " May 2023:\n").count == 4)
        let budget = whole.tokens - 10
        let cut = try builder.build(PromptRequest(system: "", query: "Q", memories: memories, budget: budget))
        let kept = cut.sections.first { $0.name == .memories }!.ids
        #expect(!kept.isEmpty && kept.count < 12 && cut.tokens <= budget)
        #expect(Set(kept) == Set(memories.prefix(kept.count).map(\.id)))
        #expect(cut.dropped.map(\.id) == memories.suffix(12 - kept.count).reversed().map(\.id))
    }

    /// A pinned turn among the latest turns stays in the dialogue, where it was said, rather
    /// than among the facts with a hole where it was.
    @Test func aPinnedTurnStaysInTheDialogue() throws {
        let pinnedTurn = item("t2", "Call me Bea from now on", minute: 2)
        let prompt = try builder.build(
            PromptRequest(
                system: "", query: "What is my name?", pinned: [item("p1", "Bea is vegetarian"), pinnedTurn],
                recent: [item("t1", "Hello", minute: 1), pinnedTurn, item("t3", "Sure, Bea", minute: 3)],
                budget: 1000))
        #expect(prompt.sections.first { $0.name == .recent }?.ids == ["t1", "t2", "t3"])
        #expect(prompt.sections.first { $0.name == .pinned }?.ids == ["p1"])
        #expect(prompt.dropped == [.init(id: "t2", reason: .duplicate)])
    }

    /// `speakerRoles`: a conversation between two people reads as alternating chat roles.
    @Test func speakersBecomeAlternatingRolesWhenAsked() throws {
        let recent = [
            item("1", "Hi Mel!", minute: 1, speaker: "Caroline"),
            item("2", "Hey Caroline", minute: 2, speaker: "Melanie"),
            item("3", "How was the race?", minute: 3, speaker: "Caroline"),
            item("4", "Hi all", minute: 4, speaker: "Jon"), item("5", "Tool output", minute: 5, speaker: nil),
        ]
        var request = PromptRequest(
            system: "S", query: "And then?", recent: recent, budget: 1000, format: .messages, speakerRoles: true)
        let roles = try #require(try builder.build(request).messages).map(\.role)
        #expect(roles == ["system", "user", "assistant", "user", "user", "user", "user"])
        let contents = try #require(try builder.build(request).messages).map(\.content)
        #expect(contents[1...3] == ["Caroline: Hi Mel!", "Melanie: Hey Caroline", "Caroline: How was the race?"])
        request.speakerRoles = false
        #expect(try #require(try builder.build(request).messages).map(\.role).allSatisfy { $0 != "assistant" })
    }

    /// A changed fact shows what it replaced, and until when, in its line and in its own fields.
    @Test func aChangedFactShowsWhatHeldBefore() throws {
        var porto = item("porto", "I moved to Porto", minute: 10)
        porto.before = ("I live in Lisbon", 1_683_504_600_000)
        let prompt = try builder.build(PromptRequest(system: "", query: "Q", memories: [porto], budget: 200))
        #expect(prompt.text.contains("8 May 2023:\n- Ana: I moved to Porto (until 8 May 2023: I live in Lisbon)"))
        let template = try PromptTemplate(
            name: "t", text: "{{#memories}}{{text}}; before {{beforeUntil}}: {{before}}{{/memories}}")
        let custom = try PromptBuilder(counter: .estimate, template: template).build(
            PromptRequest(system: "", query: "", memories: [porto], budget: 200))
        #expect(custom.text == "I moved to Porto; before 8 May 2023: I live in Lisbon")
    }

    /// A template's `now` is the day the prompt is built (UTC), as memories' days are shown.
    @Test func aTemplateSeesTodaysDate() throws {
        let template = try PromptTemplate(name: "t", text: "Today is {{now}}. {{query}}")
        let builder = PromptBuilder(counter: .estimate, template: template)
        let prompt = try builder.build(PromptRequest(system: "", query: "Q", budget: 100, now: 1_701_302_400_000))
        #expect(prompt.text == "Today is 30 November 2023. Q")
    }

    @Test func spansSayWhereEachPartIsInTheText() throws {
        let request = PromptRequest(
            system: "Answer from the memories.", query: "Où vit la sœur d'Ana? 🍵",
            pinned: [item("p1", "Ana is vegetarian")],
            memories: [item("m1", "Ma sœur vit à Porto \u{0} 🏠", minute: 3), item("m2", "I like tea", minute: 1)],
            recent: [item("r1", "Hi!", minute: 9, speaker: nil)], budget: 1000, spans: true)
        let prompt = try builder.build(request)
        let spans = try #require(prompt.spans)
        let bytes = Array(prompt.text.utf8)
        let shown = spans.map { ($0.section, String(decoding: bytes[$0.start..<$0.end], as: UTF8.self)) }
        #expect(shown.map(\.0) == [.system, .pinned, .memories, .memories, .recent, .query])
        #expect(
            shown.map(\.1) == [
                // The day's memories in the order they were said.
                "Answer from the memories.", "Ana is vegetarian", "I like tea", "Ma sœur vit à Porto \u{0} 🏠", "Hi!",
                "Où vit la sœur d'Ana? 🍵",
            ])
        // The same prompt as without spans; none unless asked.
        var plain = request
        plain.spans = false
        let without = try builder.build(plain)
        #expect(without.text == prompt.text && without.tokens == prompt.tokens && without.spans == nil)
        // A text that holds the marks gets no spans rather than wrong ones.
        // (Noncharacters cannot be written as literals.)
        let oddText =
            "odd " + String(Unicode.Scalar(UInt32(0xFDD0))!) + String(Unicode.Scalar(UInt32(0xFDD3))!) + " text"
        var marked = request
        marked.memories[1].text = oddText
        let odd = try builder.build(marked)
        #expect(odd.spans == nil && odd.text.contains(oddText))
    }

    @Test func whatDoesNotFitIsLeftOutInOrderAndReported() throws {
        let memories = (0..<20).map { item("m\($0)", "memory number \($0) about the garden and the weather") }
        let recent = (0..<6).map { item("r\($0)", "turn \($0) of the conversation so far", minute: Int64($0)) }
        let request = PromptRequest(
            system: "Be brief.", query: "What about the garden?",
            memories: memories + [item("dup", "Memory number 3 about the garden and the weather")], recent: recent,
            budget: 120, limit: 15)
        let prompt = try builder.build(request)
        #expect(prompt.tokens <= 120)
        #expect(prompt.dropped.contains(.init(id: "dup", reason: .duplicate)))
        #expect((15..<20).allSatisfy { prompt.dropped.contains(.init(id: "m\($0)", reason: .limit)) })
        // Least relevant memories went first; the recent turns stay while memories can go.
        let kept = prompt.sections.first { $0.name == .memories }!.ids
        #expect(kept == Array(memories.prefix(kept.count).map(\.id)))
        if kept.isEmpty == false { #expect(prompt.sections.first { $0.name == .recent }!.ids.count == 6) }
        #expect(
            prompt.dropped.filter { $0.reason == .budget }.map(\.id) == (kept.count..<15).reversed().map { "m\($0)" })
    }

    @Test func capsBoundTheirSection() throws {
        let memories = (0..<10).map { item("m\($0)", "a fairly long memory text number \($0) with several words") }
        let prompt = try builder.build(
            PromptRequest(system: "S", query: "Q", memories: memories, budget: 4000, caps: [.memories: 60]))
        let section = prompt.sections.first { $0.name == .memories }!
        #expect(section.tokens <= 60 && !section.ids.isEmpty)
        #expect(prompt.dropped.allSatisfy { $0.reason == .sectionCap })
    }

    @Test func aTemplateControlsTheFormAndNothingIsEscaped() throws {
        let template = try PromptTemplate(
            name: "terse",
            text: """
                {{#memories}}
                {{who}} ({{date}}): {{text}}
                {{/memories}}
                Q: {{query}}
                """)
        let prompt = try PromptBuilder(counter: builder.counter, template: template).build(
            PromptRequest(
                system: "ignored by this template", query: "Tom & Jerry <3?",
                memories: [item("m1", "I watched \"Tom & Jerry\"")], budget: 500))
        #expect(prompt.text == "Ana (8 May 2023): I watched \"Tom & Jerry\"\nQ: Tom & Jerry <3?")
    }

    @Test func aBadTemplateIsRefusedNamingItsLine() {
        #expect(throws: PromptTemplate.TemplateError.self) {
            try PromptTemplate(name: "broken.mustache", text: "line one\n{{#memories}}\n{{text}}\n")
        }
        do {
            _ = try PromptTemplate(name: "broken.mustache", text: "line one\nline two {{#a}} {{/b}}\n")
            Issue.record("a mismatched section was accepted")
        } catch {
            #expect(error.name == "broken.mustache" && error.line == 2, "\(error)")
        }
    }

    @Test func aFolderOfTemplatesLoadsByNameAndABadFileIsNamed() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("templates-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "Q: {{query}}".write(toFile: folder + "/short.mustache", atomically: true, encoding: .utf8)
        try "not a template".write(toFile: folder + "/notes.txt", atomically: true, encoding: .utf8)
        let templates = try PromptTemplate.load(directory: folder)
        #expect(Array(templates.keys) == ["short"])
        let prompt = try PromptBuilder(counter: builder.counter, template: templates["short"]!).build(
            PromptRequest(system: "S", query: "why?", budget: 100))
        #expect(prompt.text == "Q: why?")
        try "fine\n{{#a}}\n{{/b}}\n".write(toFile: folder + "/bad.mustache", atomically: true, encoding: .utf8)
        do {
            _ = try PromptTemplate.load(directory: folder)
            Issue.record("a bad template was loaded")
        } catch {
            #expect(error.name == folder + "/bad.mustache" && error.line == 3, "\(error)")
        }
    }

    @Test func theStandardTemplatesOwnWordsAreFew() throws {
        let encoder = try #require(sharedEncoder)
        let empty = PromptBuilder.Parts(template: .standard, system: "", query: "")
        var full = PromptBuilder.Parts(template: .standard, system: "", query: "")
        full.pinned = [item("p", "")]
        full.memories = [item("m", "")]
        full.summary = [item("s", "")]
        full.recent = [item("r", "", speaker: nil)]
        #expect(encoder.count(empty.render()) == 0)
        // Headers, bullets, dates and separators, with every section present: under 60 tokens.
        #expect(encoder.count(full.render()) < 60, "\(encoder.count(full.render()))")
    }

    @Test func theSystemSectionAndQueryAloneMustFit() {
        #expect(
            throws: PromptError.budgetTooSmall(needed: builder.counter.count("Be brief.\n\nWhat is it?"), budget: 3)
        ) {
            try builder.build(PromptRequest(system: "Be brief.", query: "What is it?", budget: 3))
        }
    }

    @Test func nearDuplicatesGoAndMemoriesFollowRelevance() throws {
        func memory(_ id: String, _ vector: [Float]?, _ relevance: Double) -> PromptItem {
            PromptItem(id: id, speaker: "Ana", text: "memory \(id)", createdAt: 0, relevance: relevance, vector: vector)
        }
        // a2 nearly repeats a1 (cosine 0.995), b1 the recent turn; a3 is like a1 (0.8) and stays:
        // likeness short of a near-duplicate costs no place. The items come out of order, and
        // n1 has no vector (nothing can repeat it).
        let request = PromptRequest(
            system: "", query: "q",
            memories: [
                memory("c1", [0, 1, 0], 0.1), memory("a3", [0.8, 0.6, 0], 0.8), memory("a1", [1, 0, 0], 0.9),
                memory("b1", [0, 0, 1], 0.7), memory("n1", nil, 0.75), memory("a2", [0.995, 0.0999, 0], 0.85),
            ], recent: [PromptItem(id: "r1", text: "memory r1", createdAt: 0, vector: [0, 0.1, 0.995])], budget: 500)
        let prompt = try builder.build(request)
        #expect(prompt.sections.first { $0.name == .memories }!.ids == ["a1", "a3", "n1", "c1"])
        #expect(prompt.dropped == [.init(id: "b1", reason: .duplicate), .init(id: "a2", reason: .duplicate)])
        var distinct = request
        distinct.recent = []
        let ranked = try builder.build(distinct)
        #expect(ranked.sections.first { $0.name == .memories }!.ids == ["a1", "a3", "n1", "b1", "c1"])
        // Equal relevance keeps the given order; the limit drops the rest, in the given order.
        distinct.memories = ["x", "y", "z"].map { memory($0, nil, 0.5) }
        distinct.limit = 2
        let limited = try builder.build(distinct)
        #expect(limited.sections.first { $0.name == .memories }!.ids == ["x", "y"])
        #expect(limited.dropped == [.init(id: "z", reason: .limit)])
    }

    /// Four turns, three about a dog, and a builder whose toy embedding points sentences about
    /// the dog one way and others another.
    func dogTurns() -> (PromptBuilder, [PromptItem]) {
        let embed: @Sendable ([String]) -> [[Float]] = { texts in
            texts.map { $0.contains("dog") ? [1, 0.1] : [0.1, 1] }
        }
        let turns = [
            item("t1", "We got a dog. It rains today.", minute: 1), item("t2", "The dog is called Rex!", minute: 2),
            item("t3", "Our dog loves the park.", minute: 3),
            item("t4", "This turn is long enough that it has to stay the last one the prompt keeps", minute: 4),
        ]
        return (PromptBuilder(counter: builder.counter, embed: embed), turns)
    }

    @Test func droppedTurnsLeaveTheirMostCentralSentencesAsASummary() throws {
        let (builder, turns) = dogTurns()
        let whole = try builder.build(PromptRequest(system: "", query: "Tell me more.", recent: turns, budget: 1000))
        #expect(whole.sections.first { $0.name == .summary }!.ids.isEmpty)
        // The recent section's cap keeps the last turn alone; the budget leaves room for one
        // sentence of the others, the most central (the dog, said three times; the first of them).
        let lastAlone = PromptBuilder.Parts(template: .standard, system: "", query: "Tell me more.", recent: [turns[3]])
        let cap = builder.counter.count(lastAlone.render(only: .recent))
        var oneSentence = lastAlone
        oneSentence.summary = [item("t1", "We got a dog.", minute: 1)]
        let budget = builder.cost(oneSentence, .text)
        let prompt = try builder.build(
            PromptRequest(system: "", query: "Tell me more.", recent: turns, budget: budget, caps: [.recent: cap]))
        #expect(prompt.tokens == budget)
        #expect(prompt.sections.first { $0.name == .recent }!.ids == ["t4"])
        #expect(prompt.dropped == ["t1", "t2", "t3"].map { .init(id: $0, reason: .sectionCap) })
        #expect(prompt.sections.first { $0.name == .summary }!.ids == ["t1"])
        #expect(prompt.text == oneSentence.render())
        #expect(prompt.text.contains("Earlier in this conversation (summary):\n- [8 May 2023] Ana: We got a dog.\n"))
    }

    /// `caps.summary` was accepted and ignored: the summary took whatever the budget left.
    @Test func theSummaryKeepsToItsCap() throws {
        let (builder, turns) = dogTurns()
        let lastAlone = PromptBuilder.Parts(template: .standard, system: "", query: "Tell me more.", recent: [turns[3]])
        let cap = builder.counter.count(lastAlone.render(only: .recent))
        var oneSentence = lastAlone
        oneSentence.summary = [item("t1", "We got a dog.", minute: 1)]
        let summaryCap = builder.counter.count(oneSentence.render(only: .summary))
        let prompt = try builder.build(
            PromptRequest(
                system: "", query: "Tell me more.", recent: turns, budget: 1000,
                caps: [.recent: cap, .summary: summaryCap]))
        let summary = prompt.sections.first { $0.name == .summary }!
        #expect(summary.ids == ["t1"])
        #expect(summary.tokens <= summaryCap)
        let uncapped = try builder.build(
            PromptRequest(system: "", query: "Tell me more.", recent: turns, budget: 1000, caps: [.recent: cap]))
        #expect(uncapped.sections.first { $0.name == .summary }!.tokens > summaryCap)
    }

    @Test func aMessagesPromptHasTheSystemTurnsAndQueryAsMessages() throws {
        let prompt = try builder.build(
            PromptRequest(
                system: "Be kind.", query: "And now?", memories: [item("m1", "Ana likes tea")],
                recent: [
                    PromptItem(id: "r1", speaker: "Ana", role: "user", text: "Hi", createdAt: 0),
                    PromptItem(id: "r2", role: "assistant", text: "Hello!", createdAt: 1),
                ], budget: 200, format: .messages))
        #expect(
            prompt.messages == [
                PromptMessage(
                    role: "system", content: "Be kind.\n\nRelevant memories:\n8 May 2023:\n- Ana: Ana likes tea"),
                PromptMessage(role: "user", content: "Ana: Hi"), PromptMessage(role: "assistant", content: "Hello!"),
                PromptMessage(role: "user", content: "And now?"),
            ])
        let contents = prompt.messages!.reduce(0) { $0 + builder.counter.count($1.content) }
        #expect(prompt.tokens == max(builder.counter.count(prompt.text), contents + 4 * 4 + 3))
    }

    /// A prompt's count taken line by line (each line once per build) is its count taken whole,
    /// for texts made of the pieces prompts are made of and of awkward ones around line breaks.
    @Test func countingLineByLineEqualsCountingWhole() async throws {
        let encoder = try #require(sharedEncoder)
        let texts = [
            "\n", "\n\n", " ", "  ", "\t", "- ", "[8 May 2023] ", "Ana: ", "word", "it's", "'s", "?", "!\n", "...",
            "123", "4567", "é", "日本語", " \n", "\r\n", "x", "\u{A0}", "\u{3000}", "\u{1C}", "\n ", "Known facts:",
        ]
        let pieces = Gen.int(in: 0...texts.count - 1).map { texts[$0] }
        await propertyCheck(count: 500, input: pieces.array(of: 0...40)) { parts in
            let text = parts.joined()
            #expect(TokenTally(.cl100k(encoder)).count(text) == encoder.count(text), "\(text.debugDescription)")
        }
    }

    @Test func asciiTextIsNormalizedAsUnicodeTextIs() async {
        let characters = Array("aZ09 .\t\n\r-_?\u{0B}\u{0C}")
        let ascii = Gen.int(in: 0...characters.count - 1).map { characters[$0] }.string(of: 0...30)
        await propertyCheck(count: 300, input: ascii) { text in
            #expect(
                PromptBuilder.normalized(text)
                    == text.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " "))
        }
    }

    /// For random histories, queries, templates, formats and budgets: the prompt never exceeds
    /// its budget, always holds the query, and is the same when built twice.
    @Test func randomRequestsStayWithinBudget() async throws {
        let word = Gen.letterOrNumber.string(of: 1...8)
        let text = word.array(of: 0...30).map { $0.joined(separator: " ") }
        let templates = [
            PromptTemplate.standard,
            try PromptTemplate(name: "query first", text: "Q: {{query}}\n{{#memories}}- {{line}}\n{{/memories}}"),
            try PromptTemplate(
                name: "turns",
                text: "{{#recent}}{{who}}: {{text}}\n{{/recent}}{{#summary}}~ {{text}}\n{{/summary}}{{query}}"),
            try PromptTemplate(
                name: "dense",
                text:
                    "{{system}}\n{{#pinned}}{{text}}{{/pinned}}{{#memories}}[{{date}}] {{text}}{{/memories}}\n>>> {{query}} <<<"
            ),
        ]
        await propertyCheck(
            count: 200, input: text.array(of: 0...12), text.array(of: 0...8), text, Gen.int(in: 16...600),
            Gen.bool, Gen.int(in: 0...templates.count - 1)
        ) { memoryTexts, turnTexts, query, budget, asMessages, layout in
            let builder = PromptBuilder(
                counter: builder.counter, template: templates[layout], embed: { $0.map { [Float($0.count), 1] } })
            let request = PromptRequest(
                system: "Answer briefly.", query: query,
                memories: memoryTexts.enumerated().map { item("m\($0)", $1) },
                recent: turnTexts.enumerated().map { item("r\($0)", $1, minute: Int64($0)) }, budget: budget,
                format: asMessages ? .messages : .text)
            do {
                let prompt = try builder.build(request)
                #expect(prompt.tokens <= budget && builder.counter.count(prompt.text) <= prompt.tokens)
                #expect(asMessages ? prompt.messages?.last?.content == query : prompt.messages == nil)
                #expect(query.isEmpty || prompt.text.contains(query))
                #expect(try builder.build(request) == prompt)
                #expect(Set(prompt.used).count + prompt.dropped.count == memoryTexts.count + turnTexts.count)
            } catch {
                let bare = PromptBuilder.Parts(template: templates[layout], system: "Answer briefly.", query: query)
                #expect(builder.cost(bare, request.format) > budget)
            }
        }
    }
}
