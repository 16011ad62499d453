import Foundation
import MemoryStore
import NIOCore
import NIOPosix
import Synchronization

/// A ContextStore node of a cluster: it hosts ranges of users, each a `RangeReplica` (its own
/// SQLite file in the node's folder), and keeps them applied from the log in PostgreSQL.
///
/// A write is resolved by the caller (ids, times, vectors), appended to its range's log (split
/// by range when it spans several), applied here, and only then answered: the answer reflects
/// the entry's durable commit on two machines and this node's copy of it. Other nodes apply
/// the same entries when they follow the log, so every host of a range holds the same rows
/// (equal `digest`s at equal sequences).
///
/// This first form hosts every range on every node (each node is a full replica; reads are
/// served where they arrive). Placement of ranges on some nodes, and forwarding to them, build
/// on it.
public final class ClusterNode: Sendable {
    public let ranges: RangeMap
    public let log: CommandLog
    public let replicas: [RangeReplica]
    /// Applies entries, one at a time: SQLite's work off the caller's threads.
    private let applier: NIOThreadPool
    /// This node's appends still waiting for their outcome, by idempotency key: nil until the
    /// entry is applied here (by the writer or by the follower, whichever comes first). One
    /// per write in flight, so as bounded as the writer's queue; another node's entries are
    /// applied without keeping anything.
    private let waiting = Mutex<[UUID: Result<WriteOutcome, StoreError>?]>([:])

    /// Opens (or creates) the node's copies of every range in `folder`, one file per range
    /// (`range-NNNN.sqlite`), each made by `open(path)`.
    public init(folder: String, log: CommandLog, ranges: RangeMap, open: (String) throws -> MemoryStore) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        self.ranges = ranges
        self.log = log
        replicas = try (0..<ranges.count).map { range in
            RangeReplica(range: range, store: try open(Self.path(of: range, in: folder)))
        }
        applier = NIOThreadPool(numberOfThreads: 1)
        applier.start()
    }

    public static func path(of range: Int, in folder: String) -> String {
        let number = String(range)
        return "\(folder)/range-\(String(repeating: "0", count: max(0, 4 - number.count)))\(number).sqlite"
    }

    /// The copy that holds `user`'s memories.
    public func replica(of user: String) -> RangeReplica { replicas[ranges.range(of: user)] }

    /// Stops applying and closes every range's file.
    public func close() async {
        try? await applier.shutdownGracefully()
        for replica in replicas { replica.store.close() }
    }

    // MARK: - Writing

    /// Appends `command` to the log of its users' range(s), applies it here and returns its
    /// outcome and, for each user it names, the sequence it took in that user's range (a read
    /// asking for it as `min_seq` sees the write).
    /// - Throws: `ClusterError.unavailable` when the log cannot take it durably now (nothing
    ///   was acknowledged; the same command may be sent again); what applying it threw.
    public func write(_ command: WriteCommand) async throws -> (outcome: WriteOutcome, sequences: [String: Int64]) {
        let parts = split(command)
        var outcomes: [(part: Part, outcome: WriteOutcome)] = []
        var sequences: [String: Int64] = [:]
        for part in parts {
            let (seq, outcome) = try await append(part.command, range: part.range)
            for user in part.users { sequences[user] = seq }
            outcomes.append((part, try outcome.get()))
        }
        return (merge(outcomes, of: command), sequences)
    }

    /// Appends `command` to `range`'s log alone (a command the node issues for one range, such
    /// as a purge), applies it here and returns its outcome and sequence.
    public func write(_ command: WriteCommand, range: Int) async throws -> (outcome: WriteOutcome, seq: Int64) {
        let (seq, outcome) = try await append(command, range: range)
        return (try outcome.get(), seq)
    }

    /// Appends `command` with an idempotency key of its own (retried once with it when its
    /// outcome is unknown: the connection was lost at COMMIT, and the retry finds the entry if
    /// it committed), applies the log here up to it, and returns its sequence and outcome.
    private func append(_ command: WriteCommand, range: Int) async throws -> (Int64, Result<WriteOutcome, StoreError>) {
        let key = UUID()
        waiting.withLock { $0[key] = .some(nil) }
        defer { waiting.withLock { _ = $0.removeValue(forKey: key) } }
        let seq: Int64
        do {
            seq = try await log.append(command, range: range, key: key)
        } catch ClusterError.unavailable(let message) where message.contains("outcome is unknown") {
            seq = try await log.append(command, range: range, key: key)
        }
        return (seq, try await outcome(of: key, seq: seq, range: range))
    }

    /// The outcome of this node's entry `seq` of `range` (appended with `key`), applying the log
    /// here up to it first. Another reader of the log (the follower) may be applying it right
    /// now: its outcome is recorded a moment after the range's applied sequence passes it, so
    /// it is waited for (briefly).
    private func outcome(of key: UUID, seq: Int64, range: Int) async throws -> Result<WriteOutcome, StoreError> {
        let deadline = ContinuousClock.now + log.configuration.deadline
        while true {
            if let outcome = waiting.withLock({ $0[key] ?? nil }) { return outcome }
            let before = replicas[range].appliedSequence
            if before < seq { try await catchUp(range: range, through: seq, durable: seq) }
            if replicas[range].appliedSequence == before {
                guard ContinuousClock.now < deadline else {
                    throw ClusterError.unavailable(
                        "the write is entry \(seq) of range \(range), but its outcome is not known here")
                }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    /// A command's part for one range.
    struct Part {
        var range: Int
        var command: WriteCommand
        /// The positions of its items in the command it was split from (an `add`'s memories).
        var positions: [Int]

        /// The users it names (none for a purge).
        var users: Set<String> {
            switch command {
            case .add(let add): Set(add.memories.map(\.memory.user))
            case .update(let memory, _, _), .feedback(let memory, _, _), .delete(let memory): [memory.user]
            case .forget(let user, _, _): [user]
            case .purge: []
            }
        }
    }

    /// One part per range the command touches: an `add` is split by its memories' ranges
    /// (each part atomic in its range), a `purge` goes to every range, the rest name one user.
    func split(_ command: WriteCommand) -> [Part] {
        switch command {
        case .add(let add):
            var byRange: [Int: [Int]] = [:]
            for (position, item) in add.memories.enumerated() {
                byRange[ranges.range(of: item.memory.user), default: []].append(position)
            }
            return byRange.keys.sorted().map { range in
                let positions = byRange[range]!
                return Part(
                    range: range,
                    command: .add(AddCommand(positions.map { add.memories[$0] }, ifAbsent: add.ifAbsent)),
                    positions: positions)
            }
        case .update(let memory, _, _), .feedback(let memory, _, _), .delete(let memory):
            return [Part(range: ranges.range(of: memory.user), command: command, positions: [])]
        case .forget(let user, _, _):
            return [Part(range: ranges.range(of: user), command: command, positions: [])]
        case .purge:
            return (0..<ranges.count).map { Part(range: $0, command: command, positions: []) }
        }
    }

    /// The outcome of the whole command from its parts' (each part's item positions mapped
    /// back to the command's).
    func merge(_ parts: [(part: Part, outcome: WriteOutcome)], of command: WriteCommand) -> WriteOutcome {
        guard parts.count > 1 || parts.first?.part.positions.isEmpty == false else { return parts[0].outcome }
        switch command {
        case .add:
            var merged = MemoryStore.AddOutcome()
            var stored: [(position: Int, id: String)] = []
            for (part, outcome) in parts {
                guard case .added(let added) = outcome else { continue }
                merged.skipped += added.skipped.map { part.positions[$0] }
                merged.conflicts += added.conflicts.map { part.positions[$0] }
                let left = Set(added.skipped).union(added.conflicts)
                let fresh = part.positions.indices.filter { !left.contains($0) }.map { part.positions[$0] }
                stored += zip(fresh, added.ids).map { ($0, $1) }
            }
            merged.skipped.sort()
            merged.conflicts.sort()
            merged.ids = stored.sorted { $0.position < $1.position }.map(\.id)
            return .added(merged)
        default:
            var removed = 0
            for (_, outcome) in parts { if case .removed(let count) = outcome { removed += count } }
            return .removed(removed)
        }
    }

    // MARK: - Following the log

    /// Applies `range`'s log here through `seq` at least (and whatever else is durable).
    /// - Parameter durable: A sequence an append returned (see `CommandLog.entries`).
    public func catchUp(range: Int, through seq: Int64 = .max, durable: Int64? = nil) async throws {
        let replica = replicas[range]
        while replica.appliedSequence < seq {
            let page = try await log.entries(
                range: range, after: replica.appliedSequence, limit: 1_000, durable: durable)
            guard !page.isEmpty else { return }
            try await apply(page, to: range)
        }
    }

    /// Returns once `user`'s range here has applied `seq` (a write's answer gave it): the log is
    /// applied through it.
    /// - Throws: `ClusterError.unavailable` when the log cannot be read now;
    ///   `.noSuchSequence` when the range's log ends before `seq` (no write took it).
    public func reach(_ seq: Int64, of user: String) async throws {
        let range = ranges.range(of: user)
        try await catchUp(range: range, through: seq)
        let applied = replicas[range].appliedSequence
        guard applied >= seq else {
            throw ClusterError.noSuchSequence("its range's log ends at \(applied)")
        }
    }

    /// Applies a page of `range`'s entries on the applier's thread, recording each outcome as
    /// it is applied.
    private func apply(_ page: [CommandLog.Entry], to range: Int) async throws {
        let replica = replicas[range]
        _ = try await applier.runIfActive {
            try replica.apply(page) { entry, outcome in
                self.waiting.withLock { waiting in
                    if waiting[entry.key] != nil { waiting[entry.key] = outcome }
                }
            }
        }
    }

    /// One round of following: every range's new durable entries, read at once, applied.
    /// - Returns: Whether a range may have more (a full page).
    @discardableResult
    public func catchUpAll() async throws -> Bool {
        let pages = try await log.entries(after: replicas.map(\.appliedSequence), limit: 1_000)
        for (range, page) in pages.sorted(by: { $0.key < $1.key }) where range < replicas.count {
            try await apply(page, to: range)
        }
        return pages.values.contains { $0.count == 1_000 }
    }

    /// Follows the log until cancelled: every `interval`, one transaction reads the new durable
    /// entries of every range (`catchUpAll`), and they are applied. A failure (PostgreSQL down, a
    /// failover) is retried at the next turn, and reported to `failed` when it begins and every
    /// 5 s while it lasts (not 50 times a second).
    public func follow(every interval: Duration = .milliseconds(20), failed: @Sendable (any Error) -> Void) async {
        var reported: ContinuousClock.Instant?
        while !Task.isCancelled {
            do {
                while try await catchUpAll() {}
                reported = nil
            } catch {
                if reported.map({ ContinuousClock.now - $0 >= .seconds(5) }) ?? true {
                    failed(error)
                    reported = ContinuousClock.now
                }
            }
            try? await Task.sleep(for: interval)
        }
    }
}
