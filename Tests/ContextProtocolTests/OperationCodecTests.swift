import ContextModel
import Testing

@testable import ContextProtocol

@Suite struct OperationCodecTests {
    /// Reads a request line with the codec its `op` names.
    func decode<Op: WireOperation>(_ op: Op.Type, _ text: String) throws(ProtocolError) -> Op.Arguments {
        guard case .object(let object) = try! JSONParser.parse(text) else { fatalError("test input must be an object") }
        precondition(object["op"] == .string(Op.name), "test input is not a \(Op.name) request")
        return try Op.decode(object)
    }

    /// The error code of a request line (its codec chosen by its `op`), or nil when it decodes.
    func code(_ text: String) -> ErrorCode? {
        guard case .object(let object) = try! JSONParser.parse(text), case .string(let name) = object["op"] else {
            fatalError("test input must be an object with an op")
        }
        let codecs: [String: (JSONObject) throws(ProtocolError) -> Void] = [
            Operations.Add.name: { (o) throws(ProtocolError) in _ = try Operations.Add.decode(o) },
            Operations.AddBatch.name: { (o) throws(ProtocolError) in _ = try Operations.AddBatch.decode(o) },
            Operations.Search.name: { (o) throws(ProtocolError) in _ = try Operations.Search.decode(o) },
            Operations.Get.name: { (o) throws(ProtocolError) in _ = try Operations.Get.decode(o) },
            Operations.Embed.name: { (o) throws(ProtocolError) in _ = try Operations.Embed.decode(o) },
            Operations.Prompt.name: { (o) throws(ProtocolError) in _ = try Operations.Prompt.decode(o) },
        ]
        do {
            try codecs[name]!(object)
            return nil
        } catch {
            return error.code
        }
    }

    /// Encodes a request with the codec, reads it back, and returns what came back.
    func roundTrip<Op: WireOperation>(_ op: Op.Type, _ arguments: Op.Arguments) throws -> Op.Arguments {
        guard case .object(let object) = try JSONParser.parse(Op.requestLine(arguments, rid: 7)) else {
            fatalError("a request line is an object")
        }
        #expect(object["op"] == .string(Op.name))
        #expect(object["rid"] == 7)
        return try Op.decode(object)
    }

    /// Encodes an answer with the codec, reads it back, and returns what came back.
    func roundTrip<Op: WireOperation>(_ op: Op.Type, answer: Op.Answer) throws -> Op.Answer {
        let line = Op.answerLine(answer, rid: "r")
        #expect(line.last == UInt8(ascii: "\n"))
        guard case .object(let object) = try JSONParser.parse(line.dropLast()) else {
            fatalError("an answer line is an object")
        }
        #expect(object["ok"] == true)
        return try Op.decode(answer: object)
    }

    let memory = NewMemory(
        id: "m\u{0}1", user: "caf\u{E9}", session: "s", role: .tool, speaker: "Zo\u{EB}",
        text: "line\nbreak \"quoted\"", createdAt: -5,
        metadata: #"{"b":[1,"x",{"c":null}],"n":9007199254740993}"#, vector: [0.1, -2.5, 3e-8, 1e30])

    @Test func everyRequestRoundTrips() throws {
        #expect(try roundTrip(Operations.Ping.self, Nothing()) == Nothing())
        #expect(try roundTrip(Operations.Hello.self, Nothing()) == Nothing())
        #expect(try roundTrip(Operations.Stats.self, Nothing()) == Nothing())
        for arguments in [
            Operations.Add.Arguments(memory, model: "m"),
            Operations.Add.Arguments(NewMemory(user: "u", text: "embed me", vector: nil)),
        ] {
            #expect(try roundTrip(Operations.Add.self, arguments) == arguments)
        }
        let batch = Operations.AddBatch.Arguments(
            [memory, NewMemory(user: "u", text: "t", vector: nil)], model: "x", ifAbsent: true)
        #expect(try roundTrip(Operations.AddBatch.self, batch) == batch)
        for search in [
            SearchRequest(
                user: "u", query: .vector([0.5, -0.25]), k: 3,
                filter: RowFilter(session: "s", role: .assistant, since: -1, until: TimeRange.milliseconds.upperBound),
                ef: 64, exact: true),
            SearchRequest(user: "u", query: .text("tea?")),
            SearchRequest(
                user: "u", text: "tea\u{0}?", vector: [1, 2], mode: .hybrid, k: 1000,
                filter: MemoryFilter(
                    rows: RowFilter(speaker: "Ana"),
                    metadata: [MetadataCondition(key: "k", test: .equals(.bool(false)))]),
                explain: true, halfLife: 86_400.5, context: 20),
            SearchRequest(user: "u", text: "tea", mode: .keyword),
        ] {
            #expect(try roundTrip(Operations.Search.self, search) == search)
        }
        let expiring = NewMemory(user: "u", text: "brief", vector: [1], ttl: NewMemory.maximumTTL)
        #expect(try roundTrip(Operations.Add.self, .init(expiring)) == .init(expiring))
        let named = MemoryRef(user: "caf\u{E9}", id: "id\u{0}")
        for get in [
            Operations.Get.Arguments(user: named.user, id: named.id),
            Operations.Get.Arguments(user: "u", ids: ["a", "b\u{0}"], withVector: true),
            Operations.Get.Arguments(user: "u", ids: ["one"]),
        ] {
            #expect(try roundTrip(Operations.Get.self, get) == get)
        }
        for delete in [Operations.Delete.Arguments(named), Operations.Delete.Arguments(named, withDerived: true)] {
            #expect(try roundTrip(Operations.Delete.self, delete) == delete)
        }
        let filter = MemoryFilter(
            rows: RowFilter(
                session: "s\u{0}", role: .tool, since: TimeRange.milliseconds.lowerBound, until: 9, speaker: "Ana"),
            metadata: [
                MetadataCondition(key: "a.b\"", test: .equals(.string("x\u{0}"))),
                MetadataCondition(key: "n", test: .equals(.integer(9_007_199_254_740_993))),
                MetadataCondition(key: "f", test: .equals(.double(0.5))),
                MetadataCondition(key: "t", test: .oneOf([.bool(true), .null, .string("v"), .integer(-1)])),
                MetadataCondition(
                    key: "r", test: .range(greaterThan: .integer(1), atLeast: nil, lessThan: nil, atMost: .double(2.5))),
                MetadataCondition(key: "e", test: .oneOf([])),
            ])
        for forget in [
            Operations.Forget.Arguments(user: "u"), Operations.Forget.Arguments(user: "u", filter: filter),
            Operations.Forget.Arguments(user: "u", filter: filter, withDerived: true),
        ] {
            #expect(try roundTrip(Operations.Forget.self, forget) == forget)
        }
        for list in [
            ListRequest(user: "u"),
            ListRequest(user: "u", filter: filter, newestFirst: true, limit: 1000, cursor: "5.7", withVector: true),
        ] {
            #expect(try roundTrip(Operations.List.self, list) == list)
        }
        let sessions = Operations.Sessions.Arguments(user: "u", limit: 3)
        #expect(try roundTrip(Operations.Sessions.self, sessions) == sessions)
        for users in [
            Operations.Users.Arguments(),
            Operations.Users.Arguments(prefix: "team-\u{0}", limit: 7, after: "team-\u{0}b"),
        ] {
            #expect(try roundTrip(Operations.Users.self, users) == users)
        }
        for changes in [
            MemoryChanges(session: .some(nil), role: .some(nil), speaker: .some(nil)),
            MemoryChanges(speaker: "Ana"),
            MemoryChanges(session: "s", role: .some(.user), metadata: #"{"k":[1]}"#, createdAt: -1),
            MemoryChanges(metadata: "{}"),
        ] {
            let update = Operations.Update.Arguments(named, changes)
            #expect(try roundTrip(Operations.Update.self, update) == update)
        }
        #expect(try roundTrip(Operations.Backup.self, "/tmp/b.db") == "/tmp/b.db")
        #expect(try roundTrip(Operations.Embed.self, ["a", "b\u{0}"]) == ["a", "b\u{0}"])
        #expect(try roundTrip(Operations.Auth.self, "s\u{0}cret") == "s\u{0}cret")
        let feedback = Operations.Feedback.Arguments(MemoryRef(user: "caf\u{E9}", id: "i\u{0}"), helped: false)
        #expect(try roundTrip(Operations.Feedback.self, feedback) == feedback)
        let boosted = SearchRequest(user: "u", text: "t", vector: [1], feedbackBoost: 0.5)
        #expect(try roundTrip(Operations.Search.self, boosted) == boosted)
        for prompt in [
            Operations.Prompt.Arguments(search: SearchRequest(user: "u", text: "what now?")),
            Operations.Prompt.Arguments(
                search: SearchRequest(
                    user: "caf\u{E9}", text: "tea\u{0}?", vector: [1, -2], mode: .vector,
                    filter: MemoryFilter(rows: RowFilter(role: .user, since: 5, speaker: "Ana")), ef: 9, exact: true,
                    halfLife: 60, context: 2),
                session: "s\u{0}", budget: 1_000_000, template: "{{query}}", system: "", limit: 0, recent: 200,
                messages: true, caps: ["memories": 300, "recent": 0]),
        ] {
            #expect(try roundTrip(Operations.Prompt.self, prompt) == prompt)
        }
    }

    @Test func everyAnswerRoundTrips() throws {
        #expect(
            try roundTrip(Operations.Auth.self, answer: .init(key: "app-a", role: "app"))
                == .init(key: "app-a", role: "app"))
        #expect(
            try roundTrip(Operations.Feedback.self, answer: .init(helped: 3, notHelped: 0))
                == .init(helped: 3, notHelped: 0))
        #expect(try roundTrip(Operations.Metrics.self, answer: "# TYPE x counter\nx 1\n") == "# TYPE x counter\nx 1\n")
        let built = Operations.Prompt.Answer(
            prompt: Prompt(
                text: "Q\u{0}\n", messages: [.init(role: "system", content: "S"), .init(role: "user", content: "Q")],
                tokens: 7,
                sections: [
                    .init(name: .memories, tokens: 3, ids: ["a", "b"]), .init(name: .query, tokens: 1, ids: []),
                ],
                used: ["a", "b"], dropped: [.init(id: "c", reason: .budget), .init(id: "d\u{0}", reason: .sectionCap)]),
            counter: "cl100k_base")
        #expect(try roundTrip(Operations.Prompt.self, answer: built) == built)
        var plain = built
        plain.prompt.messages = nil
        #expect(try roundTrip(Operations.Prompt.self, answer: plain) == plain)
        #expect(try roundTrip(Operations.Ping.self, answer: Nothing()) == Nothing())
        let hello = ServerHello(
            server: "contextstore", version: "1", protocolVersion: 1, dimension: nil, metric: .l2, index: "hnsw",
            blas: "openblas", kernels: "baseline", cpu: "a \"quoted\" CPU", memories: 3, embedder: "m")
        #expect(try roundTrip(Operations.Hello.self, answer: hello) == hello)
        for added in [
            Operations.Add.Answer(id: "id"),
            Operations.Add.Answer(id: "id", truncated: Truncation(index: 0, tokens: 700, kept: 256)),
        ] {
            #expect(try roundTrip(Operations.Add.self, answer: added) == added)
        }
        for stored in [
            Operations.AddBatch.Answer(ids: ["a", "b"], skipped: 2),
            Operations.AddBatch.Answer(
                ids: ["a"], skipped: 0, conflicts: [3], truncated: [Truncation(index: 1, tokens: 300, kept: 256)]),
        ] {
            #expect(try roundTrip(Operations.AddBatch.self, answer: stored) == stored)
        }
        let hits = [
            ScoredMemory(
                memory: Memory(
                    id: "h", user: "u", session: nil, role: .user, text: "t", createdAt: Int64.min,
                    metadata: #"{"k":"v"}"#, vector: []), score: 0.123456789),
            ScoredMemory(memory: Memory(id: "i", user: "u", text: "", createdAt: 0, vector: []), score: -3e-9),
            ScoredMemory(
                memory: Memory(id: "e", user: "u", text: "x", createdAt: 5, vector: [], expiresAt: 9),
                score: 0.25,
                explanation: Explanation(
                    vectorScore: 0.5, vectorRank: 3, keywordScore: nil, keywordRank: nil, neighbours: 0.125,
                    recency: 0.75),
                context: [Memory(id: "before", user: "u", session: "s", text: "y", createdAt: 4, vector: [])]),
            ScoredMemory(
                memory: Memory(id: "k", user: "u", text: "x", createdAt: 5, vector: []), score: 7.5,
                explanation: Explanation(keywordScore: 7.5, keywordRank: 1)),
        ]
        #expect(try roundTrip(Operations.Search.self, answer: .init(hits: hits)) == .init(hits: hits))
        let degraded = Operations.Search.Answer(hits: hits, degraded: ["vector"])
        #expect(try roundTrip(Operations.Search.self, answer: degraded) == degraded)
        let memory = Memory(
            id: "m", user: "u", session: "s", role: .system, speaker: "Ana\u{0}", text: "t", createdAt: 1,
            metadata: "{}",
            vector: [Float.leastNonzeroMagnitude, -Float.greatestFiniteMagnitude, 0.1])
        for get in [
            Operations.Get.Answer(memories: [memory], missing: [], many: false),
            Operations.Get.Answer(memories: [memory, memory], missing: ["x", "y\u{0}"], many: true),
            Operations.Get.Answer(memories: [], missing: ["x"], many: true),
        ] {
            #expect(try roundTrip(Operations.Get.self, answer: get) == get)
        }
        for page in [ListPage(memories: [memory], nextCursor: "1.2"), ListPage(memories: [], nextCursor: nil)] {
            #expect(try roundTrip(Operations.List.self, answer: page) == page)
        }
        let sessions = Operations.Sessions.Answer(
            sessions: [
                SessionSummary(session: "s", turns: 3, firstAt: Int64.min, lastAt: Int64.max),
                SessionSummary(session: nil, turns: 1, firstAt: 0, lastAt: 0),
            ], more: true)
        #expect(try roundTrip(Operations.Sessions.self, answer: sessions) == sessions)
        for users in [
            Operations.Users.Answer(users: [UserSummary(user: "a\u{0}b", memories: 3)], next: "a\u{0}b"),
            Operations.Users.Answer(users: [], next: nil),
        ] {
            #expect(try roundTrip(Operations.Users.self, answer: users) == users)
        }
        #expect(try roundTrip(Operations.Update.self, answer: memory) == memory)
        let backup = Operations.Backup.Answer(path: "/b", bytes: 1 << 33, seconds: 0.25, memories: 7)
        #expect(try roundTrip(Operations.Backup.self, answer: backup) == backup)
        #expect(try roundTrip(Operations.Delete.self, answer: 1) == 1)
        let places = Operations.Forget.Receipt.places
        let forgotten = Operations.Forget.Answer(
            deleted: 12,
            receipt: .init(
                removed: Dictionary(uniqueKeysWithValues: places.enumerated().map { ($1, $0 + 1) }),
                left: Dictionary(uniqueKeysWithValues: (places + ["records"]).map { ($0, 0) })))
        #expect(try roundTrip(Operations.Forget.self, answer: forgotten) == forgotten)
        let stats = ServerStats(
            store: StoreStats(
                memories: 5, users: 2, dimension: 384, metric: .cosine, index: "flat", bytesOnDisk: 1 << 40,
                bytesInMemory: 77),
            embeddingCache: CacheCounters(hits: 1, misses: 2, entries: 3, bytes: 4))
        #expect(try roundTrip(Operations.Stats.self, answer: stats) == stats)
        let embedded = Operations.Embed.Answer(
            model: "m", vectors: [[1, 0.5], [0.1, -0.2]], truncated: [Truncation(index: 1, tokens: 999, kept: 256)])
        #expect(try roundTrip(Operations.Embed.self, answer: embedded) == embedded)
    }

    @Test func decodesRequestsWrittenByHand() throws {
        #expect(
            try decode(
                Operations.Add.self,
                #"{"op":"add","user":"u","text":"hi","vector":[1,2],"session":"s","role":"tool","created_at":5,"metadata":{"b":[1, "x"]},"id":"m"}"#
            )
                == Operations.Add.Arguments(
                    NewMemory(
                        id: "m", user: "u", session: "s", role: .tool, text: "hi", createdAt: 5,
                        metadata: #"{"b":[1,"x"]}"#, vector: [1, 2])))
        #expect(
            try decode(
                Operations.AddBatch.self,
                #"{"op":"add_batch","items":[{"user":"u","text":"a","vector":[1]},{"user":"v","text":"b","vector":[2]}]}"#
            )
                == Operations.AddBatch.Arguments([
                    NewMemory(user: "u", text: "a", vector: [1]), NewMemory(user: "v", text: "b", vector: [2]),
                ]))
        #expect(
            try decode(
                Operations.Search.self,
                #"{"op":"search","user":"u","vector":[0.5],"k":3,"session":"s","role":"user","since":1,"until":2}"#)
                == SearchRequest(
                    user: "u", query: .vector([0.5]), k: 3,
                    filter: RowFilter(session: "s", role: .user, since: 1, until: 2)))
        #expect(
            try decode(Operations.Search.self, #"{"op":"search","user":"u","vector":[0.5]}"#)
                == SearchRequest(user: "u", query: .vector([0.5]), k: 5))
        #expect(
            try decode(Operations.Search.self, #"{"op":"search","user":"u","query":"tea?"}"#)
                == SearchRequest(user: "u", query: .text("tea?")))
        #expect(
            try decode(Operations.Search.self, #"{"op":"search","user":"u","vector":[0.5],"ef":200,"exact":true}"#)
                == SearchRequest(user: "u", query: .vector([0.5]), ef: 200, exact: true))
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"ef":0}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"ef":10001}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"ef":"wide"}"#) == .wrongType)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"exact":1}"#) == .wrongType)
        #expect(code(#"{"op":"search","user":"u"}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"mode":"keyword"}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"mode":"hybrid"}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u","query":"x","mode":"fuzzy"}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","query":"x","half_life":0}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","query":"x","half_life":"1d"}"#) == .wrongType)
        #expect(code(#"{"op":"search","user":"u","query":"x","context":21}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","query":"x","context":-1}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","query":"x","explain":"yes"}"#) == .wrongType)
        #expect(code(#"{"op":"search","user":"u","query":"x","where":{"n":{"gte":"3"}}}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"x","ttl":0}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"x","ttl":1.5}"#) == .wrongType)
        #expect(
            try decode(
                Operations.Search.self, #"{"op":"search","user":"u","query":"x","where":{"n":{"gte":3,"lt":9}}}"#)
                == SearchRequest(
                    user: "u", text: "x",
                    filter: MemoryFilter(metadata: [
                        MetadataCondition(
                            key: "n",
                            test: .range(greaterThan: nil, atLeast: .integer(3), lessThan: .integer(9), atMost: nil))
                    ])))
        #expect(try decode(Operations.Embed.self, #"{"op":"embed","texts":["a","b"]}"#) == ["a", "b"])
        #expect(
            try decode(Operations.Add.self, #"{"op":"add","user":"u","text":"hi","model":"m"}"#)
                == Operations.Add.Arguments(NewMemory(user: "u", text: "hi", vector: nil), model: "m"))
    }

    @Test func vectorsMayTravelAsBase64Float32() throws {
        let vector: [Float] = [0.1, -2.5, 3e-8, 1e30]
        let encoded = Base64.encode(vector)
        #expect(Base64.encode([1]) == "AACAPw==")
        #expect(Base64.decodeFloats(encoded) == vector)
        #expect(
            try decode(Operations.Search.self, #"{"op":"search","user":"u","vector":"\#(encoded)"}"#)
                == SearchRequest(user: "u", query: .vector(vector)))
        #expect(code(#"{"op":"search","user":"u","vector":"AACAPw="}"#) == .wrongType)  // not a multiple of 4
        #expect(code(#"{"op":"search","user":"u","vector":"AACA"}"#) == .wrongType)  // 3 bytes
        #expect(code(#"{"op":"search","user":"u","vector":"\#(Base64.encode([.nan]))"}"#) == .nonFinite)
        #expect(
            try decode(
                Operations.AddBatch.self,
                #"{"op":"add_batch","if_absent":true,"items":[{"user":"u","text":"a","vector":[1]}]}"#)
                == Operations.AddBatch.Arguments([NewMemory(user: "u", text: "a", vector: [1])], ifAbsent: true))
        #expect(code(#"{"op":"add_batch","if_absent":1,"items":[{"user":"u","text":"a","vector":[1]}]}"#) == .wrongType)
    }

    @Test func reportsExactErrorCodes() {
        #expect(code(#"{"op":"get"}"#) == .missingField)
        #expect(code(#"{"op":"get","user":"u","id":null}"#) == .missingField)
        #expect(code(#"{"op":"get","user":"u","id":7}"#) == .wrongType)
        #expect(code(#"{"op":"get","id":"x"}"#) == .missingField)
        #expect(code(#"{"op":"get","user":"u","id":"x","with":1}"#) == .unknownField)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"model":"m","tags":[]}"#) == .unknownField)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"sesion":"s"}"#) == .unknownField)
        #expect(code(#"{"op":"embed","texts":["a"],"model":"m"}"#) == .unknownField)
        // prompt: the query is required; search-only fields, misspelt caps and out-of-range counts
        // are refused.
        #expect(code(#"{"op":"search","user":"u","vector":[1],"feedback_boost":0}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"feedback_boost":10.5}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"feedback_boost":"1"}"#) == .wrongType)
        #expect(code(#"{"op":"prompt","user":"u"}"#) == .missingField)
        #expect(code(#"{"op":"prompt","user":"u","vector":[1]}"#) == .missingField)
        #expect(code(#"{"op":"prompt","user":"u","query":7}"#) == .wrongType)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","k":3}"#) == .unknownField)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","explain":true}"#) == .unknownField)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","caps":{"memory":9}}"#) == .unknownField)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","caps":{"memories":-1}}"#) == .invalidValue)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","caps":[1]}"#) == .wrongType)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","budget":0}"#) == .invalidValue)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","budget":1.5}"#) == .wrongType)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","limit":101}"#) == .invalidValue)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","recent":-1}"#) == .invalidValue)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","format":"chat"}"#) == .invalidValue)
        #expect(code(#"{"op":"prompt","user":"u","query":"q","template":1}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"created_at":"yesterday"}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"created_at":"2023-02-29"}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"created_at":true}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","vector":[1]}"#) == .missingField)
        #expect(code(#"{"op":"add","user":"","text":"t","vector":[1]}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"role":"robot"}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"id":""}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":"1,2"}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1,"2"]}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[]}"#) == .wrongDimension)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1,NaN]}"#) == .nonFinite)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1,-Infinity]}"#) == .nonFinite)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1e300]}"#) == .nonFinite)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"metadata":[1]}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"created_at":1.5}"#) == .wrongType)
        #expect(code(#"{"op":"add_batch","items":[]}"#) == .invalidValue)
        #expect(code(#"{"op":"add_batch","items":[1]}"#) == .wrongType)
        #expect(
            code(#"{"op":"add_batch","items":[{"user":"u","text":"t","vector":[1]},{"user":"u","vector":[1]}]}"#)
                == .missingField)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":0}"#) == .kOutOfRange)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":1001}"#) == .kOutOfRange)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":1000000000}"#) == .kOutOfRange)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":"5"}"#) == .wrongType)
        #expect(code(#"{"op":"search","vector":[1]}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u"}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u","query":3}"#) == .wrongType)
        #expect(code(#"{"op":"embed","texts":[]}"#) == .invalidValue)
        #expect(code(#"{"op":"embed","texts":["a",1]}"#) == .wrongType)
        #expect(code(#"{"op":"embed"}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"since":"yesterday"}"#) == .invalidValue)
    }

    @Test func namesTheFailingBatchItem() {
        do {
            _ = try decode(
                Operations.AddBatch.self,
                #"{"op":"add_batch","items":[{"user":"u","text":"t","vector":[1]},{"user":"u","text":"t","vector":[NaN]}]}"#
            )
            Issue.record("expected an error")
        } catch {
            #expect(error == ProtocolError(.nonFinite, "items[1]: vector[0] is not a finite float32 (nan)"))
        }
    }

    @Test func encodesResponses() {
        let ok = Response.success(rid: "r1") { writer in
            writer.field("pong")
            writer.bool(true)
        }
        #expect(String(decoding: ok, as: UTF8.self) == "{\"ok\":true,\"rid\":\"r1\",\"pong\":true}\n")
        let failure = Response.failure(rid: nil, ProtocolError(.notFound, "no \"x\""))
        #expect(
            String(decoding: failure, as: UTF8.self)
                == "{\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":\"no \\\"x\\\"\"}}\n")
    }

    @Test func memoryRoundTripsThroughTheWire() throws {
        let memory = Memory(
            id: "m", user: "u", session: "s", role: .assistant, text: "t\n", createdAt: 42,
            metadata: #"{"a":{"b":null}}"#, vector: [0.25, -1])
        var writer = JSONWriter()
        writer.memory(memory)
        guard case .object(let object) = try JSONParser.parse(writer.bytes) else {
            Issue.record("not an object")
            return
        }
        #expect(try Memory(json: object) == memory)
    }
}

@Suite struct TimeTests {
    @Test func iso8601TimesAreUnixMilliseconds() {
        #expect(ISO8601.milliseconds("1970-01-01") == 0)
        #expect(ISO8601.milliseconds("1970-01-01T00:00:00Z") == 0)
        #expect(ISO8601.milliseconds("2023-05-08T13:56:00Z") == 1_683_554_160_000)
        #expect(ISO8601.milliseconds("2023-05-08 13:56:00") == 1_683_554_160_000)
        #expect(ISO8601.milliseconds("2023-05-08T15:56:00+02:00") == 1_683_554_160_000)
        #expect(ISO8601.milliseconds("2023-05-08T08:26:00.250-0530") == 1_683_554_160_250)
        #expect(ISO8601.milliseconds("2024-02-29T23:59:59.999Z") == 1_709_251_199_999)
        #expect(ISO8601.milliseconds("1969-12-31T23:59:59Z") == -1000)
        #expect(ISO8601.milliseconds("2023-02-29") == nil)
        #expect(ISO8601.milliseconds("2023-13-01") == nil)
        #expect(ISO8601.milliseconds("2023-05-08T24:00") == nil)
        #expect(ISO8601.milliseconds("2023-05-08T13:56:00Zjunk") == nil)
        #expect(ISO8601.milliseconds("8 May 2023") == nil)
    }

    @Test func timeFieldsTakeEitherForm() throws {
        guard
            case .object(let object) = try JSONParser.parse(
                #"{"op":"search","user":"u","vector":[1],"since":"2023-05-08","until":1683554160000}"#)
        else {
            Issue.record("the test's request is not an object")
            return
        }
        let search = try Operations.Search.decode(object)
        #expect(search.filter.rows.since == 1_683_504_000_000 && search.filter.rows.until == 1_683_554_160_000)
    }
}
