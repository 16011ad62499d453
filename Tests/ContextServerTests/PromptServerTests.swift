import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import PromptBuilder
import Testing

/// `prompt` through a real server on loopback: what goes in, in which order, what is left out
/// and why, and the errors.
@Suite struct PromptServerTests {
    /// Ana's memories (3-d vectors, no model), and one of Bob's that must never reach her prompt.
    func server(
        templates: [String: PromptTemplate] = [:], allowRequestTemplates: Bool = true
    ) async throws -> TestServer {
        let server = try await TestServer(dimension: 3) {
            $0.prompts = PromptSettings(
                counter: .estimate, templates: templates, allowRequestTemplates: allowRequestTemplates)
        }
        let client = try await server.client()
        func memory(
            _ id: String, _ text: String, _ vector: [Float], session: String, at time: Int64, role: Role? = nil,
            speaker: String? = "Ana", metadata: String = "{}", user: String = "ana"
        ) -> NewMemory {
            NewMemory(
                id: id, user: user, session: session, role: role, speaker: speaker, text: text,
                createdAt: 1_683_504_000_000 + time * 60_000, metadata: metadata, vector: vector)
        }
        try await client.addBatch([
            memory(
                "p1", "Ana is vegetarian", [0, 0, 1], session: "profile", at: 0, speaker: nil,
                metadata: #"{"pinned":true}"#),
            memory("m1", "My sister moved to Porto", [1, 0, 0], session: "s1", at: 1),
            memory("m2", "my  sister moved to PORTO", [0.99, 0.14, 0], session: "s1", at: 2),
            memory("m3", "We talked about the weather", [0, 1, 0], session: "s1", at: 3),
            memory("r1", "Hi again", [0, -1, 0], session: "s2", at: 60, role: .user, speaker: nil),
            memory(
                "r2", "Hello Ana, how is Porto?", [0.5, 0.5, 0], session: "s2", at: 61, role: .assistant, speaker: nil),
            memory("b1", "Bob's sister lives in Porto", [1, 0, 0], session: "s1", at: 1, speaker: "Bob", user: "bob"),
        ])
        await client.close()
        return server
    }

    func prompt(_ client: ContextStoreClient, _ fields: String) async throws -> JSONObject {
        try await client.roundTrip(try JSONParser.parse(Array(#"{"op":"prompt","user":"ana",\#(fields)}"#.utf8)))
    }

    /// A template's `now` is today, or the day a prompt is read as of; `speaker_roles` reaches
    /// the messages.
    @Test func aTemplateSeesTheDayAndSpeakersMayBeRoles() async throws {
        let server = try await server()
        let client = try await server.client()
        let asOf = try await prompt(
            client,
            #""query":"q","vector":[1,0,0],"template":"{{now}}: {{#memories}}{{id}} {{/memories}}","as_of":"2023-05-08T00:02:00Z""#
        )
        // As of 00:02: m3 was not stored yet, m2 repeats m1, p1 is a pinned fact.
        #expect(asOf["prompt"] == .string("8 May 2023: m1 "))
        let today = try await prompt(client, #""query":"q","vector":[1,0,0],"template":"{{now}}","limit":0"#)
        #expect(today["prompt"] == .string(EmbedTemplate.day(Clock.nowMilliseconds())))
        let chat = try await prompt(
            client, #""query":"q","vector":[1,0,0],"session":"s1","limit":0,"format":"messages","speaker_roles":true"#)
        let roles = try #require(chat["messages"]?.arrayValue).compactMap { $0.objectValue?["role"]?.stringValue }
        // One speaker (Ana), who speaks first: the user.
        #expect(roles == ["system", "user", "user", "user"])
        await client.close()
        await server.stop()
    }

    @Test func aPromptHoldsPinnedFactsMemoriesAndTheSessionsLatestTurns() async throws {
        let server = try await server()
        let client = try await server.client()
        let built = try await client.prompt(
            .init(
                search: SearchRequest(user: "ana", text: "Where does my sister live?", vector: [1, 0, 0]),
                session: "s2",
                budget: 1000, system: "Be brief."))
        let answer = built.prompt
        #expect(
            answer.text == """
                Be brief.

                Known facts:
                - [8 May 2023] Ana is vegetarian

                Relevant memories:
                8 May 2023:
                - Ana: My sister moved to Porto
                - Ana: We talked about the weather

                Conversation:
                [8 May 2023] user: Hi again
                [8 May 2023] assistant: Hello Ana, how is Porto?

                Where does my sister live?
                """)
        #expect(answer.tokens == (answer.text.utf8.count + 3) / 4 && built.counter == "estimate")
        #expect(answer.used == ["p1", "m1", "m3", "r1", "r2"])
        // The pinned fact and the turns were found by the search too; m2 repeats m1's text.
        #expect(Set(answer.dropped.map(\.id)) == ["p1", "m2", "r1", "r2"])
        #expect(answer.dropped.allSatisfy { $0.reason == .duplicate })
        #expect(answer.sections.map(\.name) == PromptSection.allCases)
        #expect(answer.sections.map(\.ids) == [[], ["p1"], ["m1", "m3"], [], ["r1", "r2"], []])
        #expect(!answer.text.contains("Bob"))
        await client.close()
        await server.stop()
    }

    @Test func whatDoesNotFitGoesLeastRelevantFirstAndMessagesAreCountedToo() async throws {
        let server = try await server()
        let client = try await server.client()
        let whole = try await client.prompt(
            .init(
                search: SearchRequest(user: "ana", text: "sister", vector: [1, 0, 0]), session: "s2", budget: 1000,
                messages: true)
        ).prompt
        // Room for all but the last memory.
        let budget = whole.tokens - 1
        let cut = try await client.prompt(
            .init(
                search: SearchRequest(user: "ana", text: "sister", vector: [1, 0, 0]), session: "s2", budget: budget,
                messages: true)
        ).prompt
        #expect(cut.tokens <= budget)
        #expect(cut.dropped.filter { $0.reason == .budget }.map(\.id) == ["m3"])
        let messages = try #require(cut.messages)
        #expect(messages.map(\.role) == ["system", "user", "assistant", "user"])
        #expect(messages.suffix(3).map(\.content) == ["Hi again", "Hello Ana, how is Porto?", "sister"])
        // A limit of one memory, and caps.
        let limited = try await client.prompt(
            .init(
                search: SearchRequest(user: "ana", text: "sister", vector: [1, 0, 0]), session: "s2", limit: 1,
                caps: ["recent": 1])
        ).prompt
        #expect(limited.sections.first { $0.name == .memories }?.ids == ["m1"])
        #expect(limited.dropped.contains(.init(id: "m3", reason: .limit)))
        #expect(limited.dropped.filter { $0.reason == .sectionCap }.map(\.id) == ["r1", "r2"])
        await client.close()
        await server.stop()
    }

    /// A trial found a 1,000-token prompt half used with the old default of 10 memories: the
    /// default is now as many as the budget holds (up to 100), and `limit` a cap.
    @Test func aPromptFillsItsBudgetUnlessALimitIsGiven() async throws {
        // Forty memories, none a near-duplicate of another: each shares the query's direction
        // and has one of its own.
        let server = try await TestServer(dimension: 41) { $0.prompts = PromptSettings(counter: .estimate) }
        let client = try await server.client()
        try await client.addBatch(
            (0..<40).map { n in
                var vector = [Float](repeating: 0, count: 41)
                (vector[0], vector[n + 1]) = (0.5, 1)
                return NewMemory(
                    id: "n\(n)", user: "fill", speaker: "Ana", text: "note \(n) about tea",
                    createdAt: Int64(n) * 60_000, vector: vector)
            })
        let search = SearchRequest(user: "fill", text: "tea", vector: [1] + [Float](repeating: 0, count: 40))
        func memories(_ prompt: Prompt) -> [String] { prompt.sections.first { $0.name == .memories }?.ids ?? [] }
        let roomy = try await client.prompt(.init(search: search, budget: 1000)).prompt
        #expect(Set(memories(roomy)) == Set((0..<40).map { "n\($0)" }) && roomy.tokens <= 1000)
        // A budget for some: as many as fit, none left out for a limit.
        let tight = try await client.prompt(.init(search: search, budget: 200)).prompt
        #expect(tight.tokens <= 200 && memories(tight).count > 10 && memories(tight).count < 40, "\(tight.tokens)")
        #expect(!tight.dropped.contains { $0.reason == .limit } && tight.dropped.contains { $0.reason == .budget })
        // A limit caps it.
        let capped = try await client.prompt(.init(search: search, budget: 1000, limit: 10)).prompt
        // (The search asked for 30 candidates, the least it asks for.)
        #expect(memories(capped).count == 10 && capped.dropped.filter { $0.reason == .limit }.count == 20)
        await client.close()
        await server.stop()
    }

    /// A read key's template rendered n^d lines (2.9 GB for three nested lists), 3,000 nested
    /// sections overflowed the stack, and a 30 KB template parsed for 30-50 s. Templates in
    /// requests are off unless the server allows them; then they are scanned in one pass, nest
    /// at most 16 deep, never put a list inside a list, and their render has a byte bound.
    @Test func templatesInRequestsAreBoundedOrOff() async throws {
        let closed = try await server(allowRequestTemplates: false)
        let refused = try RawSocket(port: closed.port)
        refused.send(#"{"op":"prompt","user":"ana","query":"q","template":"{{query}}"}"# + "\n")
        #expect(
            refused.readLine()
                == #"{"ok":false,"error":{"code":"forbidden","message":"this server takes no template texts in requests (serve --allow-request-templates); name one of standard"}}"#
        )
        await closed.stop()

        let server = try await server()
        let socket = try RawSocket(port: server.port)
        func answer(_ template: String) -> String? {
            let request: JSONValue = [
                "op": "prompt", "user": "ana", "query": "sister", "vector": [1, 0, 0], "session": "s2",
                "limit": 60, "template": .string(template),
            ]
            socket.send(JSONWriter.serialize(request) + "\n")
            return socket.readLine()
        }
        let nested = "{{#memories}}{{#recent}}{{#memories}}{{line}}{{/memories}}{{/recent}}{{/memories}}"
        #expect(
            answer(nested)
                == #"{"ok":false,"error":{"code":"invalid_value","message":"the template does not parse: line 1: a section over 'recent' inside one over 'memories' renders once per pair"}}"#
        )
        // Through a transform too.
        #expect(
            answer("{{#recent}}{{#reversed(memories)}}x{{/reversed(memories)}}{{/recent}}")?.contains(
                "renders once per pair") == true)
        let deep = String(repeating: "{{#a}}", count: 100) + String(repeating: "{{/a}}", count: 100)
        #expect(answer(deep)?.contains("sections nest deeper than 16") == true)
        #expect(answer("{{=<% %>=}}<%query%>")?.contains("changing the delimiters is not allowed") == true)
        #expect(answer(String(repeating: "{{query}}", count: 2000))?.contains(#""code":"too_large""#) == true)
        // Within the length, a field printed a thousand times per memory passes the render bound.
        let wide = "{{#memories}}" + String(repeating: "{{text}}", count: 1000) + "{{/memories}}"
        let long = String(repeating: "x", count: 10_000)
        let client = try await server.client()
        let directions: [[Float]] = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0]]
        for (i, vector) in directions.enumerated() {
            _ = try await client.add(NewMemory(id: "long\(i)", user: "ana", text: "\(i) " + long, vector: vector))
        }
        let tooWide = answer(wide)
        #expect(
            tooWide?.contains(#""code":"too_large","message":"the template could write "#) == true, "\(tooWide ?? "")")
        // The largest template a request may send, of many tags, parses in one pass.
        let started = ContinuousClock.now
        let many = String(repeating: "{{#hasMemories}}{{query}}{{/hasMemories}}", count: 16 * 1024 / 41)
        #expect(answer(many)?.hasPrefix(#"{"ok":true"#) == true)
        print("a template of \(many.utf8.count) bytes: \(ContinuousClock.now - started)")
        await client.close()
        await server.stop()
    }

    @Test func templatesByNameOrTextAndTheErrors() async throws {
        let server = try await server(templates: [
            "short": try PromptTemplate(name: "short.mustache", text: "Q: {{query}}")
        ])
        let client = try await server.client()
        #expect(try await prompt(client, #""query":"why?","template":"short""#)["prompt"] == "Q: why?")
        #expect(
            try await prompt(
                client,
                #""query":"sister","vector":[1,0,0],"session":"s2","template":"{{#memories}}{{id}};{{/memories}}""#)[
                    "prompt"] == "m1;m3;")
        let socket = try RawSocket(port: server.port)
        for (request, answer) in [
            (
                #""query":"q","template":"long""#,
                #"{"ok":false,"error":{"code":"unknown_template","message":"no template named 'long'; this server has standard, short"}}"#
            ),
            (
                #""query":"q","template":"{{#a}}""#,
                #"{"ok":false,"error":{"code":"invalid_value","message":"the template does not parse: line 1: the section 'a' is not closed"}}"#
            ),
            (
                #""query":"Where does my sister live?","system":"Be brief.","budget":5"#,
                #"{"ok":false,"error":{"code":"budget_too_small","message":"the system text and the query alone need 10 tokens (estimate); the budget is 5","needed":10}}"#
            ),
        ] {
            socket.send(#"{"op":"prompt","user":"ana",\#(request)}"# + "\n")
            #expect(socket.readLine() == answer)
        }
        socket.send(#"{"op":"ping"}"# + "\n")
        #expect(socket.readLine() == #"{"ok":true,"pong":true}"#)
        // The client reads the needed tokens.
        do {
            _ = try await client.prompt(
                .init(
                    search: SearchRequest(user: "ana", text: "Where does my sister live?"), budget: 5,
                    system: "Be brief."))
            Issue.record("a budget of 5 was accepted")
        } catch ClientError.server(let code, _, let details) {
            #expect(code == "budget_too_small" && details == ["needed": 10])
        }
        await client.close()
        await server.stop()
    }

    @Test func aUserWithNoMemoriesGetsTheQueryAlone() async throws {
        let server = try await server()
        let client = try await server.client()
        let answer = try await client.prompt(
            .init(search: SearchRequest(user: "nobody", text: "hello?", vector: [1, 0, 0]), session: "s2", system: "")
        ).prompt
        #expect(answer.text == "hello?" && answer.used.isEmpty && answer.dropped.isEmpty)
        // The standard template's own words and the default instructions leave a 128-token
        // budget room for a question.
        let small = try await client.prompt(
            .init(
                search: SearchRequest(user: "ana", text: "Where does my sister live?", vector: [1, 0, 0]), budget: 128)
        ).prompt
        #expect(small.tokens <= 128 && small.text.hasSuffix("Where does my sister live?"))
        await client.close()
        await server.stop()
    }
}
