import ContextModel
import Foundation
import Testing
import VectorIndex

@testable import MemoryStore

/// Writes as commands: the codec, the applied index, and replay (the same commands applied to
/// two empty spaces give the same rows).
@Suite struct WriteCommandTests {
    let temporary = TemporaryDatabase()

    /// One command of every kind, with the values a codec gets wrong: NUL and non-ASCII text,
    /// two spellings of one character, negative zero and the extreme floats and integers.
    static let commands: [WriteCommand] = [
        .add(
            AddCommand(
                [
                    ResolvedMemory(
                        Memory(
                            id: "a\u{0}b", user: "caf\u{E9}", session: "s", role: .assistant, speaker: "Ana",
                            text: "cafe\u{301} \u{1F600}", createdAt: Int64.min, metadata: #"{"k":[1,2.5]}"#,
                            vector: [0, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -1],
                            expiresAt: Int64.max),
                        windows: [[1, 2, 3, 4, 5], [0.5, 0.25, 0, 0, 0]], timeGiven: false, dedupe: .near(0.95)),
                    ResolvedMemory(Memory(id: "", user: "", text: "", createdAt: 0, vector: []), dedupe: .exact),
                    ResolvedMemory(
                        Memory(
                            id: "n", user: "u", text: "Porto", createdAt: 5, vector: [1],
                            validity: Validity(from: Int64.min, to: Int64.max, supersedes: "o\u{0}", supersededBy: ""),
                            sources: ["turn\u{0}1", "", "doc:\u{1F600}"]),
                        feedback: FeedbackCounts(helped: NewMemory.maximumFeedbackCount, unhelped: 3)),
                ], ifAbsent: true)),
        .add(AddCommand([])),
        .update(
            MemoryRef(user: "u", id: "i"),
            MemoryChanges(session: .some(nil), role: .some(.tool), speaker: .some("b"), metadata: "{}", createdAt: -1),
            asOf: 42),
        .update(MemoryRef(user: "u", id: "i"), MemoryChanges(), asOf: Int64.max),
        .feedback(MemoryRef(user: "\u{0}", id: "x"), helped: false, asOf: -7),
        .delete(MemoryRef(user: "u", id: "i")),
        .delete(MemoryRef(user: "u", id: "i"), withDerived: true),
        .forget(
            user: "u",
            MemoryFilter(
                rows: {
                    var rows = RowFilter(session: "s", role: .user, since: 1, until: 2, speaker: "p")
                    rows.liveAt = 3
                    rows.validAt = -4
                    return rows
                }(),
                metadata: [
                    MetadataCondition(key: "a", test: .equals(.string("x\u{0}"))),
                    MetadataCondition(
                        key: "b", test: .oneOf([.integer(.min), .double(-0.0), .double(.infinity), .bool(true), .null])),
                    MetadataCondition(
                        key: "c",
                        test: .range(greaterThan: .integer(1), atLeast: nil, lessThan: nil, atMost: .double(2.5))),
                ]),
            asOf: 9),
        .forget(user: "u", MemoryFilter(), asOf: 0),
        .forget(user: "u", MemoryFilter(rows: RowFilter(session: "s")), asOf: 0, withDerived: true),
        .purge(asOf: 1_000, limit: 10_000),
    ]

    @Test func everyCommandRoundTripsByteForByte() throws {
        for command in Self.commands {
            let bytes = command.encoded()
            let decoded = try WriteCommand(decoding: bytes)
            #expect(decoded == command)
            #expect(decoded.encoded() == bytes)  // String == would let another spelling pass
        }
        // NaN has no == of its own: its bit pattern comes back.
        let nan = Float(bitPattern: 0x7FC0_1234)
        let command = WriteCommand.add(
            AddCommand([ResolvedMemory(Memory(id: "n", user: "u", text: "", createdAt: 0, vector: [nan]))]))
        guard case .add(let add) = try WriteCommand(decoding: command.encoded()) else {
            Issue.record()
            return
        }
        #expect(add.memories[0].memory.vector[0].bitPattern == 0x7FC0_1234)
    }

    @Test func damagedBytesAreRefusedNeverTrusted() throws {
        for command in Self.commands {
            let bytes = command.encoded()
            // Every prefix ends early; one byte more is left over.
            for end in 0..<bytes.count {
                #expect(throws: StoreError.self) { try WriteCommand(decoding: Array(bytes[..<end])) }
            }
            #expect(throws: StoreError.self) { try WriteCommand(decoding: bytes + [0]) }
        }
        let delete = WriteCommand.delete(MemoryRef(user: "u", id: "i")).encoded()
        #expect(throws: StoreError.invalidValue("a command of format 4, not 1 to 3")) {
            try WriteCommand(decoding: [4] + delete.dropFirst())
        }
        #expect(throws: StoreError.invalidValue("a command of kind 9")) { try WriteCommand(decoding: [1, 9]) }
        // A length far past the end is refused before anything is reserved for it.
        #expect(throws: StoreError.invalidValue("a count of 4294967295, more than the 0 bytes left hold")) {
            try WriteCommand(decoding: [1, 4, 0xFF, 0xFF, 0xFF, 0xFF])
        }
        // Text that is not UTF-8.
        var invalid = delete
        invalid[6] = 0xFF  // the user's one byte
        #expect(throws: StoreError.invalidValue("text that is not UTF-8")) { try WriteCommand(decoding: invalid) }
    }

    /// A log written before validity and sources came (format 1) is read: its memories hold from
    /// their time, for good, with no sources; its filters have no `validAt`; its deletes and
    /// forgets take nothing derived.
    @Test func aCommandOfFormatOneIsRead() throws {
        let memory = Memory(id: "i", user: "u", text: "Lisbon", createdAt: 7, vector: [1, 2])
        let add = WriteCommand.add(AddCommand([ResolvedMemory(memory)]))
        var bytes = add.encoded()
        // Format 1 had neither: the four absent optionals and the sources' count (4 bytes), before
        // the windows' count (4) and the time flag (1), go.
        // The feedback counts come last (format 3), after the absent dedupe (format 2).
        #expect(bytes.suffix(16).allSatisfy { $0 == 0 })
        bytes.removeLast(16)
        #expect(bytes.removeLast() == 0)
        #expect(bytes[(bytes.count - 13)..<(bytes.count - 5)] == [0, 0, 0, 0, 0, 0, 0, 0])
        bytes.removeSubrange((bytes.count - 13)..<(bytes.count - 5))
        bytes[0] = 1
        #expect(try WriteCommand(decoding: bytes) == add)
        let forget = WriteCommand.forget(user: "u", MemoryFilter(rows: RowFilter(session: "s")), asOf: 3)
        var forgetBytes = forget.encoded()
        // The absent validAt is the byte after liveAt's, before the metadata count and asOf; the
        // flag comes last.
        #expect(forgetBytes.last == 0 && forgetBytes[forgetBytes.count - 14] == 0)
        forgetBytes.removeLast()
        forgetBytes.remove(at: forgetBytes.count - 13)
        forgetBytes[0] = 1
        #expect(try WriteCommand(decoding: forgetBytes) == forget)
        let delete = WriteCommand.delete(MemoryRef(user: "u", id: "i"))
        #expect(try WriteCommand(decoding: [1] + delete.encoded().dropFirst().dropLast()) == delete)
    }

    /// A log written before feedback counts came with an added memory (format 2) is read: its
    /// memories are stored with none.
    @Test func aCommandOfFormatTwoIsRead() throws {
        let memory = Memory(id: "i", user: "u", text: "Lisbon", createdAt: 7, vector: [1, 2])
        let add = WriteCommand.add(AddCommand([ResolvedMemory(memory, dedupe: .exact)]))
        var bytes = add.encoded()
        #expect(bytes.suffix(16).allSatisfy { $0 == 0 })
        bytes.removeLast(16)
        bytes[0] = 2
        #expect(try WriteCommand(decoding: bytes) == add)
        let counted = WriteCommand.add(
            AddCommand([ResolvedMemory(memory, feedback: FeedbackCounts(helped: 2, unhelped: 1))]))
        var countedBytes = counted.encoded()
        countedBytes.removeLast(16)
        countedBytes[0] = 2
        guard case .add(let read) = try WriteCommand(decoding: countedBytes) else {
            Issue.record()
            return
        }
        #expect(read.memories[0].feedback == .zero)
    }

    /// A command's feedback counts are checked when it is applied, as the wire checks them: a
    /// decoded log is not trusted to hold what a request could not.
    @Test func feedbackCountsOutOfRangeAreRefused() throws {
        let store = try MemoryStore(path: temporary.folder + "/counts.db", metric: .cosine)
        let memory = Memory(id: "i", user: "u", text: "tea", createdAt: 7, vector: [1, 0])
        for counts in [
            FeedbackCounts(helped: -1, unhelped: 0), FeedbackCounts(helped: 0, unhelped: Int64.min),
            FeedbackCounts(helped: NewMemory.maximumFeedbackCount + 1, unhelped: 0),
            FeedbackCounts(helped: 0, unhelped: Int64.max),
        ] {
            let command = WriteCommand.add(AddCommand([ResolvedMemory(memory, feedback: counts)]))
            #expect(throws: StoreError.self) { try store.apply(try WriteCommand(decoding: command.encoded())) }
        }
        let most = FeedbackCounts(helped: NewMemory.maximumFeedbackCount, unhelped: NewMemory.maximumFeedbackCount)
        _ = try store.apply(.add(AddCommand([ResolvedMemory(memory, feedback: most)])))
        #expect(
            try store.feedback(user: "u", id: "i", helped: false)
                == FeedbackCounts(
                    helped: NewMemory.maximumFeedbackCount, unhelped: NewMemory.maximumFeedbackCount + 1))
        store.close()
    }

    func vector(_ seed: Int) -> [Float] {
        (0..<8).map { Float(sin(Double(seed * 8 + $0) * 0.7)) + ($0 == seed % 8 ? 2 : 0) }
    }

    /// A history of every kind of write on two users, resolved once: ids drawn, times from a
    /// fixed clock, expiry from ttl.
    func history(resolvingWith store: MemoryStore) throws -> [WriteCommand] {
        var log: [WriteCommand] = []
        let start: Int64 = 1_700_000_000_000
        for batch in 0..<6 {
            let items = (0..<20).map { i in
                let n = batch * 20 + i
                return NewMemory(
                    id: n % 7 == 0 ? nil : "m\(n)", user: n % 3 == 0 ? "bob" : "alice", session: "s\(n % 4)",
                    role: n % 2 == 0 ? .user : .assistant, text: "turn \(n) about tea and \(n % 5)",
                    metadata: #"{"n":\#(n)}"#, vector: vector(n), windows: n % 9 == 0 ? [vector(n + 1)] : [],
                    ttl: n % 11 == 0 ? 60 : nil)
            }
            log.append(try store.resolve(items, now: start + Int64(batch) * 1_000))
        }
        log.append(
            try store.resolve(
                [
                    NewMemory(id: "m1", user: "alice", text: "turn 1 about tea and 1", vector: vector(1)),  // a conflict
                    NewMemory(id: "new", user: "alice", text: "fresh", vector: vector(200)),
                ], ifAbsent: true, now: start + 7_000))
        log.append(
            .update(MemoryRef(user: "alice", id: "m2"), MemoryChanges(createdAt: start - 5), asOf: start + 8_000))
        log.append(
            .update(MemoryRef(user: "alice", id: "m4"), MemoryChanges(speaker: .some("Ana")), asOf: start + 8_000))
        log.append(.feedback(MemoryRef(user: "alice", id: "m5"), helped: true, asOf: start + 8_000))
        log.append(.feedback(MemoryRef(user: "bob", id: "m3"), helped: false, asOf: start + 8_000))
        log.append(.delete(MemoryRef(user: "alice", id: "m8")))
        log.append(.delete(MemoryRef(user: "alice", id: "absent")))
        log.append(.forget(user: "bob", MemoryFilter(rows: RowFilter(session: "s2")), asOf: start + 9_000))
        // Past every ttl: the purge takes the expired ones, as of its own time.
        log.append(.purge(asOf: start + 61_000 + 6_000, limit: 3))
        log.append(.purge(asOf: start + 61_000 + 6_000, limit: 100))
        log.append(.forget(user: "bob", MemoryFilter(), asOf: start + 70_000))
        log.append(
            try store.resolve(
                [NewMemory(id: "late", user: "bob", text: "again", vector: vector(300))], now: start + 71_000))
        return log
    }

    @Test(arguments: ["flat", "hnsw"])
    func theSameCommandsGiveTheSameRows(index: String) throws {
        let spaceIndex: SpaceIndex = index == "flat" ? .flat : .hnsw(HNSWParameters(M: 4, efConstruction: 16))
        let paths = (0..<3).map { temporary.folder + "/replica\($0).db" }
        let first = try MemoryStore(path: paths[0], metric: .cosine, index: spaceIndex)
        let log = try history(resolvingWith: first)
        var outcomes: [WriteOutcome] = []
        for command in log { outcomes.append(try first.apply(command)) }
        #expect(first.appliedIndex == Int64(log.count))
        // What the history did, so the replay is known to cover each path.
        #expect(outcomes.contains(.added(MemoryStore.AddOutcome(ids: ["new"], skipped: [], conflicts: [0]))))
        #expect(outcomes.contains(.deleted(false)) && outcomes.contains(.deleted(true)))
        #expect(outcomes.contains(.counted(FeedbackCounts(helped: 1, unhelped: 0))))
        #expect(outcomes.contains(.removed(3)))  // the first purge, at its limit

        // A second space applies the log from its bytes; a third, only alice's commands.
        let second = try MemoryStore(path: paths[1], metric: .cosine, index: spaceIndex)
        for (i, command) in log.enumerated() {
            let outcome = try second.apply(try WriteCommand(decoding: command.encoded()), index: Int64(i + 1))
            #expect(outcome == outcomes[i])
        }
        let third = try MemoryStore(path: paths[2], metric: .cosine, index: spaceIndex)
        for command in log where Self.touches(command, user: "alice") { try third.apply(command) }

        #expect(try first.digest() == second.digest())
        for user in ["alice", "bob"] {
            #expect(try first.digest(user: user).digest == second.digest(user: user).digest)
        }
        // A user's digest does not depend on other users' rows.
        #expect(try first.digest(user: "alice").digest == third.digest(user: "alice").digest)
        #expect(try first.digest(user: "alice").digest != first.digest(user: "bob").digest)
        #expect(try first.digest() != third.digest())
        // Read back from the file, the same.
        let digest = try first.digest()
        first.close()
        let reopened = try MemoryStore(path: paths[0])
        #expect(try reopened.digest() == digest)
        #expect(reopened.appliedIndex == Int64(log.count))
        #expect(
            try reopened.list(ListRequest(user: "alice", limit: 1000)).memories
                == second.list(ListRequest(user: "alice", limit: 1000)).memories)
    }

    static func touches(_ command: WriteCommand, user: String) -> Bool {
        switch command {
        case .add(let add): add.memories.contains { $0.memory.user == user }
        case .update(let memory, _, _), .feedback(let memory, _, _), .delete(let memory, _): memory.user == user
        case .forget(let forgotten, _, _, _): forgotten == user
        case .purge: true
        }
    }

    @Test func anIndexMustFollowTheLastAndAFailedCommandTakesNone() throws {
        let store = try MemoryStore(path: temporary.path, dimension: 2)
        let add = try store.resolve([NewMemory(id: "a", user: "u", text: "t", vector: [1, 0])], now: 5)
        #expect(throws: StoreError.invalidValue("command 2 does not follow the last one applied, 0")) {
            try store.apply(add, index: 2)
        }
        try store.apply(add, index: 1)
        #expect(throws: StoreError.invalidValue("command 1 does not follow the last one applied, 1")) {
            try store.apply(add, index: 1)
        }
        // Refused by the space: nothing changes, the index included.
        let wrong = try store.resolve([NewMemory(id: "b", user: "u", text: "t", vector: [1, 0, 0])], now: 5)
        #expect(throws: StoreError.wrongDimension(expected: 2, got: 3)) { try store.apply(wrong) }
        let forged = WriteCommand.add(
            AddCommand([ResolvedMemory(Memory(id: "c", user: "u", text: "t", createdAt: Int64.min, vector: [1, 0]))]))
        #expect(throws: StoreError.self) { try store.apply(forged) }
        #expect(store.appliedIndex == 1)
        // A command that changes no row still takes its index.
        #expect(try store.apply(.delete(MemoryRef(user: "u", id: "none"))) == .deleted(false))
        #expect(store.appliedIndex == 2)
        store.close()
        #expect(try MemoryStore(path: temporary.path).appliedIndex == 2)
    }
}
