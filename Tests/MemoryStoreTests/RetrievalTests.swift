import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// The keyword index, the search modes and their options, and expiry, on a real SQLite file.
@Suite struct RetrievalTests {
    let temporary = TemporaryDatabase()

    func turn(
        _ id: String, _ text: String, user: String = "u", session: String? = "s1", speaker: String? = nil,
        at minute: Int64 = 0, vector: [Float] = [1, 0, 0], metadata: String = "{}", ttl: Int64? = nil
    ) -> NewMemory {
        NewMemory(
            id: id, user: user, session: session, speaker: speaker, text: text,
            createdAt: 1_700_000_000_000 + minute * 60_000,
            metadata: metadata, vector: vector, ttl: ttl)
    }

    func ids(_ hits: [ScoredMemory]) -> [String] { hits.map(\.memory.id) }

    func keyword(
        _ store: MemoryStore, _ text: String, user: String = "u", k: Int = 10, filter: MemoryFilter = MemoryFilter()
    )
        throws -> [String]
    {
        ids(try store.search(SearchRequest(user: user, text: text, mode: .keyword, k: k, filter: filter)))
    }

    @Test func wordsAreStemmedAccentsFoldedAndStopWordsLeftOut() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([
            turn("run", "She was running in the park"),
            turn("cafe", "We met at the Café Noir"),
            turn("the", "the and of"),
            turn("other", "Nothing to see here", speaker: "Caroline"),
        ])
        #expect(try keyword(store, "runs") == ["run"])
        #expect(try keyword(store, "cafe noir") == ["cafe"])
        // Only stop words: they are searched as they are, rather than nothing.
        let the = try keyword(store, "The")
        #expect(Set(the) == ["the", "run", "cafe"] && the.first == "the")
        // A stop word next to a real word adds nothing: "what" and "did" are not searched.
        #expect(try keyword(store, "What did Caroline do?") == ["other"])
        #expect(try keyword(store, "!!! ???").isEmpty)
    }

    @Test func aUserSeesOnlyTheirOwnRows() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([turn("a", "pizza night", user: "alice"), turn("b", "pizza night", user: "bob")])
        #expect(try keyword(store, "pizza", user: "alice") == ["a"])
        #expect(try keyword(store, "pizza", user: "bob") == ["b"])
        #expect(try keyword(store, "pizza", user: "carol").isEmpty)
    }

    /// The index's terms, as FTS5 holds them (its `fts5vocab` view), sorted.
    func indexTerms(_ path: String) throws -> [String] {
        let database = try Database(path: path)
        defer { database.close() }
        try database.execute("CREATE VIRTUAL TABLE temp.terms USING fts5vocab(main, memory_terms, 'row')")
        let rows = try database.prepare("SELECT term FROM temp.terms ORDER BY term")
        var terms: [String] = []
        while try rows.step() { terms.append(rows.string(at: 0)!) }
        return terms
    }

    /// Each user's words are terms of their own (the user's scope, U+0001, the stemmed word), so
    /// a search reads no other user's doclists; a text that looks like a scope stays in its own.
    @Test func eachUsersWordsAreTermsOfTheirOwn() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([
            turn("a", "Violins played", user: "alice", speaker: "Ana"),
            turn("b", "violins", user: "bob"),
            turn("c", "42\u{1}planted \(KeywordIndex.scope(user: "bob"))\u{1}violins", user: "carol"),
        ])
        store.close()
        let (alice, bob, carol) = (
            KeywordIndex.scope(user: "alice"), KeywordIndex.scope(user: "bob"), KeywordIndex.scope(user: "carol")
        )
        // 1_700_000_000_000 is 14 November 2023.
        let day = ["14", "2023", "novemb"]
        let expected =
            [alice, bob, carol] + ["ana", "plai", "violin"].map { alice + "\u{1}" + $0 }
            + ["violin"].map { bob + "\u{1}" + $0 }
            + ["42", "plant", bob, "violin"].map { carol + "\u{1}" + $0 }
            + [alice, bob, carol].flatMap { scope in day.map { scope + "\u{1}" + $0 } }
        #expect(try indexTerms(temporary.path) == expected.sorted())
        let reopened = try MemoryStore(path: temporary.path)
        #expect(try keyword(reopened, "violin", user: "bob") == ["b"])
        #expect(try keyword(reopened, "42 planted violins", user: "carol") == ["c"])
        #expect(try keyword(reopened, "november", user: "alice") == ["a"])
        reopened.close()
    }

    /// Writes in transactions of their own leave the keyword index in many segments; merging
    /// them, step by step, leaves at most one a level and the same hits with the same scores.
    @Test func theKeywordIndexIsMergedUntilEachLevelHoldsOneSegment() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        let words = ["violin", "garden", "porto", "lisbon", "coffee", "train", "river"]
        for i in 0..<45 {
            try store.add([
                turn(
                    "m\(i)", "\(words[i % 7]) by the \(words[(i / 7) % 7]), day \(i % 5)",
                    user: i % 3 == 0 ? "alice" : "bob", at: Int64(i))
            ])
        }
        let before = try MemoryStore.check(path: temporary.path).keywordSegments
        #expect(before.contains { $0 > 1 })
        func searches() throws -> [[String]] {
            try ["violin garden", "porto by the river", "day 3", "coffee lisbon train"].flatMap { text in
                try ["alice", "bob"].map { user in
                    try store.search(SearchRequest(user: user, text: text, mode: .keyword, k: 45)).map {
                        "\($0.memory.id) \($0.score)"
                    }
                }
            }
        }
        let asked = try searches()
        #expect(asked.allSatisfy { !$0.isEmpty })
        #expect(try store.mergeKeywordSegmentsFully() > 0)
        let after = try MemoryStore.check(path: temporary.path)
        #expect(after.problems == [] && after.keywordSegments.allSatisfy { $0 <= 1 })
        #expect(after.keywordSegments.reduce(0, +) < before.reduce(0, +))
        #expect(try !store.mergeKeywordSegments())
        #expect(try searches() == asked)
        store.close()
    }

    /// A file whose keyword index shares its words among users (schema 13) is indexed again
    /// when opened, each user's words apart.
    @Test func aSharedKeywordIndexIsRebuiltWhenOpened() throws {
        do {
            let store = try MemoryStore(path: temporary.path, dimension: 3)
            try store.add([
                turn("a", "the blue guitar", user: "alice", speaker: "Mel"), turn("b", "a blue bicycle", user: "bob"),
            ])
            store.close()
            let database = try Database(path: temporary.path)
            try database.execute(
                """
                DROP TABLE memory_terms;
                CREATE VIRTUAL TABLE memory_terms USING fts5(
                    scope, speaker, text, day, tokenize = 'porter unicode61 remove_diacritics 2');
                INSERT INTO memory_terms (rowid, scope, speaker, text, day)
                    SELECT seq, user, coalesce(speaker, ''), text, '' FROM memories;
                PRAGMA user_version = 13;
                """)
            database.close()
        }
        let store = try MemoryStore(path: temporary.path)
        #expect(try keyword(store, "blue", user: "alice") == ["a"])
        #expect(try keyword(store, "Mel", user: "alice") == ["a"])
        #expect(try keyword(store, "blue", user: "bob") == ["b"])
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
        #expect(try !indexTerms(temporary.path).contains("blue"))
    }

    /// Replaced, updated, deleted and forgotten memories leave the keyword index as the table is,
    /// also after reopening; `check` compares the two row by row.
    @Test func theKeywordIndexFollowsEveryWrite() throws {
        do {
            let store = try MemoryStore(path: temporary.path, dimension: 3)
            try store.add([
                turn("a", "apples and pears"), turn("b", "bananas"), turn("c", "cherries", session: "s2"),
                turn("d", "dates", speaker: "Ann"),
            ])
            try store.add([turn("a", "oranges")])
            #expect(try keyword(store, "apples").isEmpty)
            #expect(try keyword(store, "oranges") == ["a"])
            #expect(try store.delete(user: "u", id: "b"))
            #expect(try keyword(store, "bananas").isEmpty)
            #expect(try store.forget(user: "u", filter: MemoryFilter(rows: RowFilter(session: "s2"))) == 1)
            #expect(try keyword(store, "cherries").isEmpty)
            _ = try store.update(user: "u", id: "d", MemoryChanges(speaker: .some("Bea")))
            #expect(try keyword(store, "Ann").isEmpty)
            #expect(try keyword(store, "Bea") == ["d"])
            _ = try store.update(user: "u", id: "d", MemoryChanges(createdAt: 1_262_304_000_000))
            #expect(try keyword(store, "January 2010") == ["d"])
            store.close()
        }
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
        let store = try MemoryStore(path: temporary.path)
        #expect(try keyword(store, "oranges") == ["a"])
        #expect(try store.forget(user: "u") == 2)
        #expect(try keyword(store, "oranges").isEmpty)
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
        // A keyword row that disagrees with its memory is found.
        let database = try Database(path: temporary.path)
        try database.execute(
            "INSERT INTO memory_terms (rowid, scope, speaker, text, day) VALUES (99, '1', '', 'x', '')")
        database.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == ["1 keyword rows index no memory"])
    }

    /// Pinned facts: metadata `"pinned": true` exactly (not 1, not "true", not nested), the
    /// user's own, live, oldest first, read through their partial index.
    @Test func pinnedFactsAreReadThroughTheirIndex() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([
            turn("late", "likes tea", at: 5, metadata: #"{"pinned":true}"#),
            turn("early", "is vegetarian", at: 1, metadata: #"{"pinned":true,"topic":"food"}"#),
            turn("one", "x", metadata: #"{"pinned":1}"#), turn("text", "x", metadata: #"{"pinned":"true"}"#),
            turn("nested", "x", metadata: #"{"a":{"pinned":true}}"#), turn("plain", "x"),
            turn("other", "x", user: "v", metadata: #"{"pinned":true}"#),
            turn("brief", "x", metadata: #"{"pinned":true}"#, ttl: 1),
        ])
        #expect(try store.pinned(user: "u", limit: 50).map(\.id) == ["brief", "early", "late"])
        Thread.sleep(forTimeInterval: 1.1)  // the ttl is 1 s
        let pinned = try store.pinned(user: "u", limit: 50)
        #expect(pinned.map(\.id) == ["early", "late"] && pinned.allSatisfy { $0.vector.count == 3 })
        #expect(try store.pinned(user: "u", limit: 1).map(\.id) == ["early"])
        store.close()
        let database = try Database(path: temporary.path)
        defer { database.close() }
        // With no validity to test, and with one (once some memory's validity is bounded).
        var asOf = RowFilter()
        asOf.validAt = 5
        for validity in [SQL.validity(RowFilter()), SQL.validity(asOf)] {
            let plan = try database.prepare("EXPLAIN QUERY PLAN " + SQL.pinned(validity: validity.sql))
            try plan.bind(StatementArguments(values: ["u", Int64(0)] + validity.arguments + [Int64(50)]))
            var steps: [String] = []
            while try plan.step() { steps.append(plan.string(at: 3) ?? "") }
            #expect(steps.contains { $0.contains("USING INDEX memories_pinned") }, "\(steps)")
        }
    }

    /// A file of schema 6 (before the keyword index) is indexed when opened, with progress in the log.
    @Test func aFileWithoutTheKeywordIndexIsIndexedWhenOpened() throws {
        do {
            let store = try MemoryStore(path: temporary.path, dimension: 3)
            try store.add([turn("a", "the blue guitar", speaker: "Mel"), turn("b", "a red bicycle")])
            store.close()
            let database = try Database(path: temporary.path)
            try database.execute(
                """
                DROP TRIGGER memory_sources_gone; DROP TABLE memory_sources;
                ALTER TABLE memories DROP COLUMN valid_from; ALTER TABLE memories DROP COLUMN valid_to;
                ALTER TABLE memories DROP COLUMN supersedes; ALTER TABLE memories DROP COLUMN superseded_by;
                DROP TRIGGER memory_time_changed; DROP TRIGGER memory_time_changes_gone;
                DROP TABLE memory_time_changes;
                ALTER TABLE memories DROP COLUMN helped; ALTER TABLE memories DROP COLUMN unhelped;
                DROP INDEX memories_pinned; DROP INDEX memories_expiring; ALTER TABLE memories DROP COLUMN expires_at;
                DROP TABLE memory_terms;
                PRAGMA user_version = 6;
                """)
            database.close()
        }
        let store = try MemoryStore(path: temporary.path)
        #expect(try keyword(store, "guitar") == ["a"])
        #expect(try keyword(store, "Mel") == ["a"])
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
        // The fill reports its progress every `step` rows.
        let database = try Database(path: temporary.path)
        try database.execute("DELETE FROM memory_terms")
        var log: [String] = []
        try KeywordIndex.fill(database, log: { log.append($0) }, step: 1)
        #expect(
            log == [
                "indexing the keywords of 2 memories", "indexed the keywords of 1 of 2 memories",
                "indexed the keywords of 2 of 2 memories", "keyword index ready: 2 memories",
            ])
        database.close()
    }

    /// A memory that only one side finds is fused all the same; `explain` says which side found
    /// what, at which rank, and what the neighbouring turns added.
    @Test func hybridFusesBothSidesAndExplainsEachHit() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        // No sessions, so no neighbours: the fusion alone.
        try store.add([
            turn("near", "a sunny afternoon", session: nil, vector: [1, 0, 0]),
            turn("word", "my violin lessons", session: nil, vector: [0, 0, 1]),
            turn("both", "violin in the sun", session: nil, vector: [0.9, 0.1, 0]),
            turn("none", "groceries", session: nil, vector: [0, 1, 0]),
        ])
        let c = MemoryStore.fusionConstant
        let hits = try store.search(
            SearchRequest(user: "u", text: "violin", vector: [1, 0, 0], mode: .hybrid, k: 4, explain: true))
        // Vector ranks: near, both, none, word (none and word tie at 0; by id). Keyword ranks:
        // word (the shorter text), both.
        #expect(ids(hits) == ["both", "word", "near", "none"])
        let both = try #require(hits[0].explanation)
        #expect(both.vectorRank == 2 && both.keywordRank == 2 && both.keywordScore! > 0 && both.neighbours == 0)
        #expect(abs(both.vectorScore! - 0.9 / (0.82 as Float).squareRoot()) < 1e-6)
        #expect(abs(hits[0].score - 2 / (c + 2)) < 1e-6)
        let word = try #require(hits[1].explanation)
        #expect(word.keywordRank == 1 && word.vectorRank == 4 && word.recency == nil)
        #expect(word.keywordScore! > both.keywordScore!)
        #expect(abs(hits[1].score - (1 / (c + 1) + 1 / (c + 4))) < 1e-6)
        let none = try #require(hits[3].explanation)
        #expect(none.keywordRank == nil && none.keywordScore == nil && none.vectorRank == 3)
        // Without explain, no explanation; a vector alone ranks by similarity, as before.
        let plain = try store.search(SearchRequest(user: "u", text: "violin", vector: [1, 0, 0], k: 2))
        #expect(plain.allSatisfy { $0.explanation == nil } && ids(plain) == ["both", "word"])
        let vectorOnly = try store.search(SearchRequest(user: "u", vector: [1, 0, 0], k: 1))
        #expect(ids(vectorOnly) == ["near"] && vectorOnly[0].score == 1)

        // A turn next to the one that holds the words is credited half of what that one got.
        try store.add([
            turn("asked", "what do you play?", user: "v", at: 1, vector: [0, 1, 0]),
            turn("answer", "the violin", user: "v", at: 2, vector: [1, 0, 0]),
            turn("later", "unrelated", user: "v", session: "s2", at: 3, vector: [0, 1, 0]),
        ])
        let credited = try store.search(
            SearchRequest(user: "v", text: "violin", vector: [1, 0, 0], mode: .hybrid, k: 3, explain: true))
        #expect(ids(credited) == ["answer", "asked", "later"])
        let asked = try #require(credited[1].explanation)
        // Vector ranks: answer, asked, later (asked and later tie; by id). Keyword: answer.
        #expect(asked.keywordRank == nil && asked.vectorRank == 2)
        #expect(abs(asked.neighbours! - MemoryStore.neighbourCredit * 2 / (c + 1)) < 1e-6)
        #expect(credited[2].explanation?.neighbours == 0)
    }

    /// A hybrid hit whose speaker the question names weighs `speakerBoost` times as much; a
    /// speaker of two words needs both, and one of stop words alone is never named.
    @Test func aQuestionThatNamesASpeakerLiftsWhatTheySaid() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([
            turn("c", "sunrise over the water", session: nil, speaker: "Caroline", vector: [1, 0, 0]),
            turn("m", "sunrise over the water", session: nil, speaker: "Melanie Ann", vector: [0.9, 0.3, 0]),
            turn("me", "sunrise over the water", session: nil, speaker: "me", vector: [0.8, 0.6, 0]),
        ])
        let c = MemoryStore.fusionConstant
        func boosted(_ text: String) throws -> [String] {
            let hits = try store.search(
                SearchRequest(user: "u", text: text, vector: [1, 0, 0], mode: .hybrid, explain: true))
            #expect(hits.count == 3)
            for hit in hits {
                // Without sessions the fused score is the two sides' and the speaker's factor.
                let explanation = try #require(hit.explanation)
                let fused =
                    1 / (c + Float(explanation.vectorRank!))
                    + (explanation.keywordRank.map { 1 / (c + Float($0)) } ?? 0)
                #expect(abs(hit.score - fused * (explanation.speaker ?? 1)) < 1e-6)
                #expect(explanation.speaker == nil || explanation.speaker == MemoryStore.speakerBoost)
                #expect(explanation.session == nil)
            }
            return hits.filter { $0.explanation?.speaker != nil }.map(\.memory.id)
        }
        #expect(try boosted("Who watched the sunrise with me?") == [])
        #expect(try boosted("What did Melanie paint?") == [])
        #expect(try boosted("What did Melanie Ann paint?") == ["m"])
        #expect(try boosted("And caroline, did she paint?") == ["c"])
    }

    /// Every hybrid hit in a session is credited `sessionCredit` times the sum of the session's
    /// best `sessionBest` fused scores: a turn in a session that answers much of the question
    /// passes one, alone in its session, that scored a little more on its own.
    @Test func aSessionWithOtherHitsLiftsItsTurns() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([
            turn("a", "one", session: "s1", at: 0, vector: [1, 0, 0]),
            turn("f", "two", session: "s1", at: 1, vector: [0, 0, 1]),
            turn("b", "three", session: "s1", at: 2, vector: [0.9, 0.436, 0]),
            turn("lonely", "four", session: "s2", at: 3, vector: [0.95, 0.312, 0]),
            turn("g", "five", session: "s2", at: 4, vector: [0, 0, 1]),
            turn("free", "six", session: nil, at: 5, vector: [0, 1, 0]),
        ])
        let hits = try store.search(
            SearchRequest(user: "u", text: "nothing matches", vector: [1, 0, 0], mode: .hybrid, explain: true))
        // Vector ranks: a, lonely, b, f, g, free. Without the credit lonely (1/12 + 1/15 / 2)
        // passes b (1/13 + 1/14 / 2).
        let order = ids(hits)
        #expect(order.firstIndex(of: "b")! < order.firstIndex(of: "lonely")!)
        #expect(hits.first { $0.memory.id == "free" }?.explanation?.session == nil)
        for session in ["s1", "s2"] {
            let members = hits.filter { $0.memory.session == session }
            let credit = try #require(members.first?.explanation?.session)
            #expect(members.allSatisfy { $0.explanation?.session == credit })
            let own = members.map { $0.score - credit }.sorted(by: >).prefix(MemoryStore.sessionBest)
            #expect(abs(credit - MemoryStore.sessionCredit * own.reduce(0, +)) < 1e-6)
        }
    }

    /// Filters hold in every mode and both index kinds, and a search returns min(k, matches).
    @Test(arguments: [SpaceIndex.flat, .hnsw(HNSWParameters())])
    func filtersComposeWithEveryMode(index: SpaceIndex) throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3, index: index)
        var batch: [NewMemory] = []
        for i in 0..<60 {
            batch.append(
                turn(
                    "m\(i)", i % 2 == 0 ? "coffee talk \(i)" : "tea talk \(i)", session: "s\(i % 3)", at: Int64(i),
                    vector: [1, Float(i) / 60, Float(i % 7)], metadata: #"{"topic":"\#(i % 4)","n":\#(i)}"#))
        }
        try store.add(batch)
        let filter = MemoryFilter(
            rows: RowFilter(session: "s0"),
            metadata: [
                MetadataCondition(
                    key: "n", test: .range(greaterThan: nil, atLeast: .integer(10), lessThan: .integer(50), atMost: nil)
                )
            ])
        // Sessions s0 and n in 10..<50: 12, 15, ..., 48 (13 memories), of which 7 are coffee.
        let expected = Set((10..<50).filter { $0 % 3 == 0 }.map { "m\($0)" })
        for mode in SearchMode.allCases {
            let hits = try store.search(
                SearchRequest(user: "u", text: "talk", vector: [1, 0.5, 1], mode: mode, k: 100, filter: filter))
            #expect(Set(ids(hits)) == expected, "\(mode)")
            let few = try store.search(
                SearchRequest(user: "u", text: "coffee", vector: [1, 0.5, 1], mode: mode, k: 5, filter: filter))
            #expect(few.count == 5, "\(mode)")
            #expect(few.allSatisfy { expected.contains($0.memory.id) }, "\(mode)")
        }
        // Exact for the vector side: the best 5 of the matching memories by brute force.
        let query: [Float] = [1, 0.5, 1]
        let norm = (query.map { $0 * $0 }.reduce(0, +)).squareRoot()
        let best = batch.filter { expected.contains($0.id!) }.map { memory -> (String, Float) in
            let v = memory.vector!
            let n = (v.map { $0 * $0 }.reduce(0, +)).squareRoot()
            return (memory.id!, zip(v, query).map { $0 * $1 }.reduce(0, +) / (n * norm))
        }.sorted { $0.1 > $1.1 }.prefix(5).map(\.0)
        let vector = try store.search(SearchRequest(user: "u", vector: query, mode: .vector, k: 5, filter: filter))
        #expect(ids(vector) == best)
        // `in`, and equality, on metadata.
        let topics = MemoryFilter(metadata: [
            MetadataCondition(key: "topic", test: .oneOf([.string("1"), .string("2")]))
        ])
        let topical = try store.search(SearchRequest(user: "u", text: "tea", mode: .keyword, k: 100, filter: topics))
        #expect(Set(ids(topical)) == Set((0..<60).filter { $0 % 4 == 1 }.map { "m\($0)" }))
    }

    @Test func halfLifeLiftsRecentMemories() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        let now = Clock.nowMilliseconds()
        try store.add([
            NewMemory(
                id: "old", user: "u", text: "my car is red", createdAt: now - 400 * 86_400_000, vector: [1, 0, 0]),
            NewMemory(id: "new", user: "u", text: "my car is blue now", createdAt: now - 1000, vector: [0.95, 0.3, 0]),
        ])
        let plain = try store.search(SearchRequest(user: "u", text: "car", vector: [1, 0, 0], mode: .vector, k: 2))
        #expect(ids(plain) == ["old", "new"])
        let recent = try store.search(
            SearchRequest(
                user: "u", text: "car", vector: [1, 0, 0], mode: .vector, k: 2, explain: true, halfLife: 86_400))
        #expect(ids(recent) == ["new", "old"])
        let factors = recent.map { $0.explanation!.recency! }
        #expect(factors[0] > 0.999 && abs(factors[1] - 0.5) < 1e-6)
        #expect(abs(MemoryStore.recency(ageSeconds: 86_400, halfLife: 86_400) - 0.75) < 1e-6)
        #expect(abs(recent[0].score - factors[0] / (MemoryStore.fusionConstant + 2)) < 1e-6)
    }

    /// `created_at = Int64.min` met the clock in `now - createdAt` and stopped the server; the
    /// row stayed, so the restarted server stopped again. The store refuses such times now, and
    /// a row that holds one (written before) is ranked without trapping.
    @Test func aTimeAtTheEdgeOfInt64NeitherStoresNorTraps() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        #expect(throws: StoreError.self) {
            try store.add([NewMemory(id: "x", user: "u", text: "t", createdAt: Int64.min, vector: [1, 0, 0])])
        }
        #expect(throws: StoreError.self) {
            try store.update(user: "u", id: "x", MemoryChanges(createdAt: TimeRange.milliseconds.upperBound + 1))
        }
        try store.add([turn("old", "car"), turn("edge", "car", vector: [0.9, 0.1, 0])])
        store.close()
        let database = try Database(path: temporary.path)
        try database.execute("UPDATE memories SET created_at = -9223372036854775808 WHERE id = 'edge'")
        try database.execute("UPDATE memories SET created_at = 9223372036854775807 WHERE id = 'old'")
        database.close()
        let reopened = try MemoryStore(path: temporary.path)
        var request = SearchRequest(user: "u", text: "car", vector: [1, 0, 0], mode: .vector, k: 2, halfLife: 60)
        // A memory holds from its `created_at`: "old" does not yet; the history holds both.
        #expect(try ids(reopened.search(request)) == ["edge"])
        request.validity = .all
        #expect(try Set(ids(reopened.search(request))) == ["old", "edge"])
        reopened.close()
    }

    /// A query that names a time weighs what was said then twice, in hybrid searches, and
    /// `explain` says which span it read.
    @Test func aQuestionThatNamesATimeLiftsWhatWasSaidThen() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        let may = ISO8601.milliseconds("2023-05-10T12:00:00Z")!
        let june = ISO8601.milliseconds("2023-06-10T12:00:00Z")!
        try store.add([
            NewMemory(id: "june", user: "u", text: "Ana cooked pasta", createdAt: june, vector: [1, 0, 0]),
            NewMemory(id: "may", user: "u", text: "Ana cooked pasta again", createdAt: may, vector: [0.9, 0.3, 0]),
        ])
        func search(_ text: String) throws -> [ScoredMemory] {
            try store.search(SearchRequest(user: "u", text: text, vector: [1, 0, 0], mode: .hybrid, explain: true))
        }
        #expect(try ids(search("What did Ana cook?")) == ["june", "may"])
        let hits = try search("What did Ana cook in May 2023?")
        #expect(ids(hits) == ["may", "june"])
        #expect(
            hits[0].explanation?.time
                == TimeWindow(
                    from: ISO8601.milliseconds("2023-05-01T00:00:00Z")!,
                    to: ISO8601.milliseconds("2023-06-01T00:00:00Z")!,
                    phrase: "may 2023", relative: false))
        #expect(hits[1].explanation?.time == nil)
        // Relative to the request's `now`: "last month" read in June 2023 is May.
        var request = SearchRequest(
            user: "u", text: "What did Ana cook last month?", vector: [1, 0, 0], mode: .hybrid)
        request.now = june
        #expect(try ids(store.search(request)) == ["may", "june"])
        #expect(request.changesWithTheClock == false)
        request.now = nil
        #expect(request.changesWithTheClock)
        // A plain vector search keeps its similarity scores.
        #expect(
            try ids(store.search(SearchRequest(user: "u", text: "in May 2023", vector: [1, 0, 0], mode: .vector)))
                == ["june", "may"])
    }

    @Test func contextGivesEachHitItsNeighbouringTurnsOnce() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        // Added out of time order: the session's order is by time.
        try store.add([
            turn("t3", "three", at: 3), turn("t1", "one", at: 1), turn("t2", "two pizza", at: 2),
            turn("t5", "five pizza", at: 5), turn("t4", "four", at: 4),
            turn("x", "pizza elsewhere", session: nil, at: 9),
            turn("t0", "zero", at: 0),
        ])
        let hits = try store.search(SearchRequest(user: "u", text: "pizza", mode: .keyword, k: 3, context: 2))
        #expect(Set(ids(hits)) == ["t2", "t5", "x"])
        let context = Dictionary(uniqueKeysWithValues: hits.map { ($0.memory.id, $0.context.map(\.id)) })
        // t2 and t5 share t3 and t4: each turn is given once, with the first hit that reaches it.
        let first = ids(hits).first { $0 != "x" }!
        #expect(context[first] == (first == "t2" ? ["t0", "t1", "t3", "t4"] : ["t3", "t4"]))
        #expect(context["x"] == [])
        let union = Set(hits.flatMap { $0.context.map(\.id) })
        #expect(union == ["t0", "t1", "t3", "t4"])
    }

    /// An expired memory is never returned and is purged, keyword row and all, in one transaction.
    @Test(arguments: [SpaceIndex.flat, .hnsw(HNSWParameters())])
    func expiredMemoriesAreNeverReturnedAndArePurged(index: SpaceIndex) throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3, index: index)
        try store.add([
            turn("keep", "lasting pizza", vector: [1, 0, 0]),
            turn("brief", "brief pizza", vector: [1, 0, 0], ttl: 1),
        ])
        #expect(try store.get(user: "u", id: "brief")?.expiresAt != nil)
        #expect(Set(try keyword(store, "pizza")) == ["keep", "brief"])
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try keyword(store, "pizza") == ["keep"])
        #expect(ids(try store.search(SearchRequest(user: "u", vector: [1, 0, 0], k: 5))) == ["keep"])
        #expect(try store.get(user: "u", id: "brief") == nil)
        #expect(try store.get(user: "u", ids: ["brief"], withVector: false) == [nil])
        #expect(try store.list(ListRequest(user: "u")).memories.map(\.id) == ["keep"])
        #expect(try store.sessions(user: "u", limit: 10).sessions.map(\.turns) == [1])
        #expect(store.stats().expired == 1 && store.stats().purged == 0)
        #expect(try store.purgeExpired() == 1)
        #expect(try store.purgeExpired() == 0)
        #expect(store.stats().expired == 0 && store.stats().purged == 1 && store.count == 1)
        store.close()
        #expect(try MemoryStore.check(path: temporary.path).problems == [])
        let reopened = try MemoryStore(path: temporary.path)
        #expect(reopened.stats().purged == 1 && reopened.count == 1)
        reopened.close()
    }

    /// What the result cache keeps answers until: never later than a memory's expiry, exact
    /// after a purge, nil when nothing expires, and rebuilt when the file is opened again.
    @Test func theNextExpiryIsNeverLaterThanAnExpiry() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([turn("keep", "a", vector: [1, 0, 0])])
        #expect(store.nextExpiry == nil)
        try store.add([
            turn("soon", "b", vector: [0, 1, 0], ttl: 60), turn("later", "c", vector: [0, 0, 1], ttl: 3600),
        ])
        let soon = try #require(try store.get(user: "u", id: "soon")?.expiresAt)
        let later = try #require(try store.get(user: "u", id: "later")?.expiresAt)
        #expect(store.nextExpiry == soon)
        #expect(try store.delete(user: "u", id: "soon"))
        #expect(store.nextExpiry == soon)  // early is allowed: answers are then kept less long
        store.close()
        let reopened = try MemoryStore(path: temporary.path)
        #expect(reopened.nextExpiry == later)
        try reopened.add([turn("sooner", "d", vector: [1, 1, 0], ttl: 10)])
        let sooner = try #require(try reopened.get(user: "u", id: "sooner")?.expiresAt)
        #expect(reopened.nextExpiry == sooner)
        #expect(try reopened.purgeExpired(now: sooner) == 1)
        #expect(reopened.nextExpiry == later)  // the purge sets it exactly
        #expect(try reopened.delete(user: "u", id: "later"))
        #expect(reopened.nextExpiry == nil)
        reopened.close()
    }
}

/// Keyword scores came from statistics over every user's rows: alice's score for a word fell
/// from 4.10 to 0.74 after bob stored it 20 times, telling her of his words (issue 24, item 10).
@Suite struct KeywordStatisticsTests {
    let temporary = TemporaryDatabase()

    func turn(_ id: String, _ text: String, user: String, speaker: String? = nil) -> NewMemory {
        NewMemory(id: id, user: user, speaker: speaker, text: text, createdAt: 1_700_000_000_000, vector: [1, 0, 0])
    }

    func scores(_ store: MemoryStore, _ text: String, user: String) throws -> [String: Float] {
        let hits = try store.search(SearchRequest(user: user, text: text, mode: .keyword, k: 100))
        return Dictionary(uniqueKeysWithValues: hits.map { ($0.memory.id, $0.score) })
    }

    @Test func aUsersScoresDependOnItsOwnMemoriesAlone() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        try store.add([
            turn("a1", "I practise the violin every evening", user: "alice", speaker: "Alice"),
            turn("a2", "The violin teacher moved to Porto", user: "alice"),
            turn("a3", "Dinner with my sister on Friday", user: "alice"),
        ])
        let before = try scores(store, "violin teacher", user: "alice")
        #expect(before.count == 2)
        try store.add((0..<20).map { turn("b\($0)", "violin violin sonata number \($0)", user: "bob") })
        #expect(try scores(store, "violin teacher", user: "alice") == before)
        #expect(try scores(store, "violin", user: "bob").count == 20)
    }

    /// On a space of one user, the scores are FTS5's own bm25() (the same formula over the
    /// same rows).
    @Test func onOneUsersSpaceTheScoresAreFTS5s() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 3)
        let texts = [
            "I practise the violin every evening", "The violin teacher moved to Porto", "Dinner with my sister",
            "My sister plays the violin and the cello, violin first", "Porto in May: the teacher's concert",
            // A rare word twice in one row: how often a row holds a word counts.
            "The cello, then the cello again",
        ]
        try store.add(texts.enumerated().map { turn("m\($0.offset)", $0.element, user: "u", speaker: "Ana") })
        for query in ["violin", "violin teacher", "sister cello", "cello", "Porto May concert", "ana"] {
            let ours = try scores(store, query, user: "u")
            let match = KeywordIndex.matchExpression(user: "u", terms: KeywordIndex.terms(query))
            let theirs = try store.withReader { database in
                let rows = try database.prepare(
                    // FTS5's own BM25 over speaker, text and day (the scope weighs nothing).
                    "SELECT m.id, -bm25(memory_terms, 0.0, 1.0, 1.0, 1.0) FROM memory_terms JOIN memories m ON m.seq = memory_terms.rowid WHERE memory_terms MATCH ?"
                )
                try rows.bind([match])
                var scores: [String: Float] = [:]
                while try rows.step() { scores[rows.string(at: 0)!] = Float(rows.double(at: 1)) }
                return scores
            }
            #expect(Set(ours.keys) == Set(theirs.keys), "\(query)")
            for (id, score) in theirs { #expect(abs(ours[id]! - score) < 1e-5, "\(query) \(id)") }
        }
    }
}

/// Byte-exact identity where two spellings of one text met (issue 24, item 19).
@Suite struct ExactIdentityTests {
    let temporary = TemporaryDatabase()

    @Test func anImportOfAnotherSpellingIsAConflictNotASkip() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 2)
        try store.add([NewMemory(id: "a", user: "u", text: "caf\u{E9}", createdAt: 1, vector: [1, 0])])
        let outcome = try store.addIfAbsent([
            NewMemory(id: "a", user: "u", text: "cafe\u{301}", createdAt: 1, vector: [1, 0])
        ])
        #expect(outcome.skipped.isEmpty && outcome.conflicts == [0])
        store.close()
    }

    @Test func aUsersChangesAreItsOwnGeneration() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 2)
        let before = store.generation(of: "caf\u{E9}")
        try store.add([NewMemory(id: "a", user: "cafe\u{301}", text: "t", vector: [1, 0])])
        #expect(store.generation(of: "caf\u{E9}") == before)
        #expect(store.generation(of: "cafe\u{301}") != before)
        store.close()
    }
}
