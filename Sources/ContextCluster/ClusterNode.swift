import Foundation
import MemoryStore
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A ContextStore node of a cluster: it hosts some ranges of users, each a `RangeReplica` (its
/// own SQLite file in the node's folder), and keeps them applied from the log in PostgreSQL.
///
/// A write is resolved by the caller (ids, times, vectors), appended to its range's log (split
/// by range when it spans several), applied here, and only then answered: the answer reflects
/// the entry's durable commit on two machines and this node's copy of it. Other hosts apply
/// the same entries when they follow the log, so every host of a range holds the same rows
/// (equal `digest`s at equal sequences).
///
/// Which ranges a node hosts is kept in PostgreSQL too (`CommandLog.Placement`): every node
/// renews its lease each second and moves ranges towards their rendezvous-hashed hosts among
/// the live nodes (`reconcile`); a node chosen for a range opens it, catches up from the log,
/// and only then serves it. Requests about users of a range a node does not serve are
/// forwarded by the server to one of the range's hosts (`hosts(of:)`).
///
/// The first host of each range stores a snapshot of it in PostgreSQL every `snapshotEvery`
/// entries and then deletes the entries every host has applied (`maintain`); a node that opens
/// a range far behind its snapshot, or behind what was deleted, starts from the snapshot.
public final class ClusterNode: Sendable {
    public let name: String
    public let ranges: RangeMap
    public let log: CommandLog
    /// How many nodes host each range (fewer while fewer are live).
    public let copies: Int
    /// How long a node's lease lasts past its last renewal (renewed every third of it).
    public let lease: Duration
    /// How many entries a range's snapshot may lag its first host before it is taken again.
    public let snapshotEvery: Int64
    /// A space with the ranges' settings and no memories (`node.sqlite`): what the server reads
    /// the dimension, metric, model and templates from whatever ranges are open.
    public let settings: MemoryStore
    private let folder: String
    private let open: @Sendable (String) throws -> MemoryStore
    /// Applies entries, one at a time: SQLite's work off the caller's threads.
    private let applier: NIOThreadPool
    /// This node's appends still waiting for their outcome, by idempotency key: nil until the
    /// entry is applied here (by the writer or by the follower, whichever comes first). One
    /// per write in flight, so as bounded as the writer's queue; another node's entries are
    /// applied without keeping anything.
    private let waiting = Mutex<[UUID: Result<WriteOutcome, StoreError>?]>([:])
    private let state = Mutex(State())
    /// Whether a `reconcile` round is running.
    private let reconciling = Mutex(false)
    /// Renews the node's lease, from `join` until `close`.
    private let renewing = Mutex<Task<Void, Never>?>(nil)
    /// Whether a renewal (or join) is in flight: one at a time, or two could each join anew.
    private let renewal = Mutex(false)

    /// What the node knows of the cluster, and the ranges it has open.
    struct State {
        /// The ranges open here: served, or catching up to be.
        var replicas: [Int: RangeReplica] = [:]
        /// Each range's placement as last read (or set) here.
        var placement: [Int: CommandLog.Placement] = [:]
        /// The live nodes' addresses, by name.
        var addresses: [String: String] = [:]
        /// Ranges open here that this node no longer hosts, served until the time given.
        var leaving: [Int: ContinuousClock.Instant] = [:]
        /// Ranges taken out of `replicas` whose files are not closed yet (not opened again
        /// until they are: one process holds a file once).
        var closing: Set<Int> = []
        /// Since when every round has reached PostgreSQL (nil: the last one failed).
        var connectedSince: ContinuousClock.Instant?
        /// This node's life, once joined.
        var fence: CommandLog.Fence?
        /// Until when its lease surely holds, by this machine's clock: a lease past its last
        /// renewal's start (PostgreSQL counts from the renewal's commit, later).
        var leaseHolds: ContinuousClock.Instant?
        var address = ""

        /// Takes each range's placement unless the one known is newer (a `refresh` and a
        /// round may read PostgreSQL in either order), and the live nodes' addresses.
        mutating func learn(
            _ ranges: some Sequence<CommandLog.Placement>, addresses: [String: String]
        ) {
            for range in ranges where (placement[range.range]?.version ?? .min) <= range.version {
                placement[range.range] = range
            }
            self.addresses = addresses
        }
    }

    /// Prepares the node `name` with its ranges' files in `folder` (`range-NNNN.sqlite`, each
    /// made by `open(path)` when the node comes to host it); `join` starts it.
    /// - Throws: `ClusterError.invalidConfiguration` for a name that is empty or longer than
    ///   200 bytes, copies outside 1...16, a lease outside 1 s...10 min or `snapshotEvery`
    ///   outside 1...100,000,000; what opening the settings space throws.
    public init(
        name: String, folder: String, log: CommandLog, ranges: RangeMap, copies: Int = 2,
        lease: Duration = .seconds(3), snapshotEvery: Int64 = 10_000,
        open: @escaping @Sendable (String) throws -> MemoryStore
    ) throws {
        guard !name.isEmpty, name.utf8.count <= 200 else {
            throw ClusterError.invalidConfiguration("a node's name must be 1 to 200 bytes, not '\(name)'")
        }
        guard (1...16).contains(copies) else {
            throw ClusterError.invalidConfiguration("copies must be 1...16, not \(copies)")
        }
        guard lease >= .seconds(1), lease <= .seconds(600) else {
            throw ClusterError.invalidConfiguration("the lease must be 1 s to 10 min, not \(lease)")
        }
        guard (1...100_000_000).contains(snapshotEvery) else {
            throw ClusterError.invalidConfiguration(
                "snapshots are taken every 1...100,000,000 entries, not \(snapshotEvery)")
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        self.name = name
        self.ranges = ranges
        self.log = log
        self.copies = copies
        self.lease = lease
        self.snapshotEvery = snapshotEvery
        self.folder = folder
        self.open = open
        settings = try open(folder + "/node.sqlite")
        applier = NIOThreadPool(numberOfThreads: 1)
        applier.start()
    }

    public static func path(of range: Int, in folder: String) -> String {
        let number = String(range)
        return "\(folder)/range-\(String(repeating: "0", count: max(0, 4 - number.count)))\(number).sqlite"
    }

    /// The ranges open here (served, or catching up), in range order.
    public var replicas: [RangeReplica] {
        state.withLock { $0.replicas.values.sorted { $0.range < $1.range } }
    }

    /// The copy of `range` open here, if it is.
    public func replica(of range: Int) -> RangeReplica? { state.withLock { $0.replicas[range] } }

    /// The copy that holds `user`'s memories, if this node serves its range.
    public func replica(of user: String) -> RangeReplica? {
        let range = ranges.range(of: user)
        return serves(range) ? replica(of: range) : nil
    }

    /// Whether this node serves `range`: it hosts it (or did until less than a lease ago) and
    /// has it open. Not whether its lease holds: a node cut off from PostgreSQL (or all of them,
    /// during a failover) still answers reads from its copy; its writes are fenced, and a read
    /// with a `min_seq` it cannot reach is `unavailable`.
    public func serves(_ range: Int) -> Bool {
        state.withLock { state in
            state.replicas[range] != nil
                && (state.placement[range]?.hosts.contains(name) == true || state.leaving[range] != nil)
        }
    }

    /// Where other nodes reach this one (set by `join`).
    public var address: String { state.withLock { $0.address } }

    /// The addresses of the live nodes that serve `range`, this one excluded.
    public func hosts(of range: Int) -> [String] {
        state.withLock { state in
            (state.placement[range]?.hosts ?? []).filter { $0 != name }.compactMap { state.addresses[$0] }
        }
    }

    /// Every range's placement and every live node, as this node last read them.
    public var view: (placement: [CommandLog.Placement], addresses: [String: String]) {
        state.withLock { ($0.placement.values.sorted { $0.range < $1.range }, $0.addresses) }
    }

    /// Stops applying and closes every range's file.
    public func close() async {
        renewing.withLock { $0?.cancel() }
        try? await applier.shutdownGracefully()
        for replica in replicas { replica.store.close() }
        settings.close()
    }

    // MARK: - Writing

    /// Appends `command` to the log of its users' range(s), applies it here and returns its
    /// outcome and, for each user it names, the sequence it took in that user's range (a read
    /// asking for it as `min_seq` sees the write).
    /// - Throws: `ClusterError.unavailable` when the log cannot take it durably now (nothing
    ///   was acknowledged; the same command may be sent again); what applying it threw.
    public func write(_ command: WriteCommand) async throws -> (outcome: WriteOutcome, sequences: [String: Int64]) {
        let parts = split(command)
        let appended = try await append(parts.map { ($0.command, $0.range) })
        var outcomes: [(part: Part, outcome: WriteOutcome)] = []
        var sequences: [String: Int64] = [:]
        for (part, (seq, outcome)) in zip(parts, appended) {
            for user in part.users { sequences[user] = seq }
            outcomes.append((part, try outcome.get()))
        }
        return (merge(outcomes, of: command), sequences)
    }

    /// Appends `command` to `range`'s log alone (a command the node issues for one range, such
    /// as a purge), applies it here and returns its outcome and sequence.
    public func write(_ command: WriteCommand, range: Int) async throws -> (outcome: WriteOutcome, seq: Int64) {
        let (seq, outcome) = try await append([(command, range)])[0]
        return (try outcome.get(), seq)
    }

    /// Appends each command to its range's log in one transaction (one wait for the standby
    /// for all), each with an idempotency key of its own (retried once with them when the
    /// outcome is unknown: the connection was lost at COMMIT, and the retry finds the entries
    /// if they committed), applies the log here up to them, and returns their sequences and
    /// outcomes in order.
    private func append(_ commands: [(command: WriteCommand, range: Int)]) async throws -> [(
        seq: Int64, outcome: Result<WriteOutcome, StoreError>
    )] {
        let replicas = try commands.map { command in
            guard let replica = replica(of: command.range) else {
                throw ClusterError.unavailable("range \(command.range) is not open on node \(name) (it moved); retry")
            }
            return replica
        }
        guard let fence = state.withLock({ $0.fence }) else {
            throw ClusterError.unavailable("node \(name) has not joined the cluster")
        }
        try requireLease()
        let parts = commands.map { CommandLog.Part($0.command, range: $0.range, key: UUID()) }
        waiting.withLock { waiting in for part in parts { waiting[part.key] = .some(nil) } }
        defer { waiting.withLock { waiting in for part in parts { waiting[part.key] = nil } } }
        let sequences: [Int64]
        do {
            sequences = try await log.append(parts, fence: fence)
        } catch ClusterError.unavailable(let message) where message.contains("outcome is unknown") {
            try requireLease()  // cut off meanwhile: the retry would wait through the deadline again
            sequences = try await log.append(parts, fence: fence)
        } catch ClusterError.unavailable(let message) where message.hasSuffix(CommandLog.lapsed) {
            Task { try? await keepLease() }  // PostgreSQL is back, and the lease is not yet
            throw ClusterError.unavailable(message)
        }
        var outcomes: [(seq: Int64, outcome: Result<WriteOutcome, StoreError>)] = []
        for ((part, seq), replica) in zip(zip(parts, sequences), replicas) {
            outcomes.append((seq, try await outcome(of: part.key, seq: seq, in: replica)))
        }
        return outcomes
    }

    /// The outcome of this node's entry `seq` of `range` (appended with `key`), applying the log
    /// here up to it first. Another reader of the log (the follower) may be applying it right
    /// now: its outcome is recorded a moment after the range's applied sequence passes it, so
    /// it is waited for (briefly).
    private func outcome(of key: UUID, seq: Int64, in replica: RangeReplica) async throws -> Result<
        WriteOutcome, StoreError
    > {
        let range = replica.range
        let deadline = ContinuousClock.now + log.configuration.deadline
        while true {
            if let outcome = waiting.withLock({ $0[key] ?? nil }) { return outcome }
            let before = replica.appliedSequence
            if before < seq { try await catchUp(replica, through: seq, durable: seq) }
            if replica.appliedSequence == before {
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
            case .update(let memory, _, _), .feedback(let memory, _, _), .delete(let memory, _): [memory.user]
            case .forget(let user, _, _, _): [user]
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
        case .update(let memory, _, _), .feedback(let memory, _, _), .delete(let memory, _):
            return [Part(range: ranges.range(of: memory.user), command: command, positions: [])]
        case .forget(let user, _, _, _):
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
                merged.duplicates += added.duplicates.map {
                    MemoryStore.Duplicate(item: part.positions[$0.item], id: $0.id)
                }
                let left = Set(added.skipped).union(added.conflicts).union(added.duplicates.map(\.item))
                let fresh = part.positions.indices.filter { !left.contains($0) }.map { part.positions[$0] }
                stored += zip(fresh, added.ids).map { ($0, $1) }
            }
            merged.skipped.sort()
            merged.conflicts.sort()
            merged.duplicates.sort { $0.item < $1.item }
            merged.ids = stored.sorted { $0.position < $1.position }.map(\.id)
            return .added(merged)
        default:
            var removed = 0
            for (_, outcome) in parts { if case .removed(let count) = outcome { removed += count } }
            return .removed(removed)
        }
    }

    // MARK: - Following the log

    /// Applies `replica`'s log here through `seq` at least (and whatever else is durable).
    /// - Parameter durable: A sequence an append returned (see `CommandLog.entries`).
    func catchUp(_ replica: RangeReplica, through seq: Int64 = .max, durable: Int64? = nil) async throws {
        while replica.appliedSequence < seq {
            let page = try await log.entries(
                range: replica.range, after: replica.appliedSequence, limit: 1_000, durable: durable)
            guard !page.isEmpty else { return }
            try await apply(page, to: replica)
        }
    }

    /// Returns once `user`'s range here has applied `seq` (a write's answer gave it): the log is
    /// applied through it.
    /// - Throws: `ClusterError.unavailable` when the log cannot be read now or the range is not
    ///   open here; `.noSuchSequence` when the range's log ends before `seq` (no write took it).
    public func reach(_ seq: Int64, of user: String) async throws {
        let range = ranges.range(of: user)
        guard let replica = replica(of: range) else {
            throw ClusterError.unavailable("range \(range) is not open on node \(name)")
        }
        if replica.appliedSequence < seq { try requireLease() }
        try await catchUp(replica, through: seq)
        guard replica.appliedSequence >= seq else {
            throw ClusterError.noSuchSequence("its range's log ends at \(replica.appliedSequence)")
        }
    }

    /// Applies a page of entries to `replica` on the applier's thread, recording each outcome
    /// as it is applied.
    private func apply(_ page: [CommandLog.Entry], to replica: RangeReplica) async throws {
        _ = try await applier.runIfActive {
            try replica.apply(page) { entry, outcome in
                self.waiting.withLock { waiting in
                    if waiting[entry.key] != nil { waiting[entry.key] = outcome }
                }
            }
        }
    }

    /// One round of following: every open range's new durable entries, read at once, applied.
    /// - Returns: Whether a range may have more (a full page).
    @discardableResult
    public func catchUpAll() async throws -> Bool {
        let open = state.withLock { $0.replicas }
        let (pages, truncated) = try await log.entries(after: open.mapValues(\.appliedSequence), limit: 1_000)
        for (range, page) in pages.sorted(by: { $0.key < $1.key }) {
            guard let replica = open[range] else { continue }
            try await apply(page, to: replica)
        }
        if !truncated.isEmpty { reopen(truncated) }
        return pages.values.contains { $0.count == 1_000 }
    }

    /// Applies the ranges open here that were notified, through the durable sequence each
    /// notification gave (no barrier: its append had returned); others are not read.
    private func catchUp(notified: [Int: Int64]) async throws {
        for (range, seq) in notified.sorted(by: { $0.key < $1.key }) {
            guard let replica = replica(of: range), replica.appliedSequence < seq else { continue }
            do {
                try await catchUp(replica, through: seq, durable: seq)
            } catch ClusterError.truncated {
                reopen([range])
            }
        }
    }

    /// Stops serving `ranges` (entries this node lacks were deleted): the next round of
    /// `reconcile` opens them again from their snapshot, if this node still hosts them.
    private func reopen(_ ranges: Set<Int>) {
        let closed = state.withLock { state in
            ranges.compactMap { range -> RangeReplica? in
                state.leaving[range] = nil
                state.closing.insert(range)
                return state.replicas.removeValue(forKey: range)
            }
        }
        closeLater(closed)
    }

    /// Closes `replicas` (taken out of the map and marked `closing`) once requests that took
    /// them before are done.
    private func closeLater(_ replicas: [RangeReplica]) {
        guard !replicas.isEmpty else { return }
        Task {
            try? await Task.sleep(for: lease)
            for replica in replicas { replica.store.close() }
            state.withLock { $0.closing.subtract(replicas.map(\.range)) }
        }
    }

    /// How a node learns of what other nodes append.
    public struct Following: Sendable {
        /// Woken by PostgreSQL (`LISTEN`) as soon as another node appends.
        public var listens: Bool
        /// How often it reads the log without being woken (a notification may be lost).
        public var interval: Duration
        /// Reports and snapshots its ranges every lease (`maintain`); when off, only when
        /// `maintain` is called.
        public var maintains: Bool

        public init(listens: Bool = true, interval: Duration = .milliseconds(250), maintains: Bool = true) {
            self.listens = listens
            self.interval = interval
            self.maintains = maintains
        }
    }

    /// Follows the log and keeps the node's ranges until cancelled: when woken by another
    /// node's append, and at least every `following.interval`, one transaction reads the new
    /// durable entries of every open range (`catchUpAll`); every third of the lease the node
    /// reconciles (`reconcile`), and every lease it reports and snapshots its ranges
    /// (`maintain`; unless `following.maintains` is off). A failure (PostgreSQL down, a
    /// failover) is retried at the next turn, and reported to `failed` when it begins and every
    /// 5 s while it lasts.
    public func follow(_ following: Following = Following(), failed: @escaping @Sendable (any Error) -> Void) async {
        let wakeup = Wakeup()
        await withDiscardingTaskGroup { group in
            if following.listens {
                group.addTask {
                    await self.log.listen { appended in
                        if let appended { wakeup.appended(appended.range, through: appended.seq) } else { wakeup.all() }
                    }
                }
            }
            group.addTask {
                var reported: ContinuousClock.Instant?
                while !Task.isCancelled {
                    let reasons = await wakeup.wait(upTo: following.interval)
                    do {
                        if reasons.all {
                            while try await self.catchUpAll() {}
                        } else {
                            try await self.catchUp(notified: reasons.appended)
                        }
                        reported = nil
                    } catch {
                        if reported.map({ ContinuousClock.now - $0 >= .seconds(5) }) ?? true {
                            failed(error)
                            reported = ContinuousClock.now
                        }
                        // Not at once again when woken: PostgreSQL may be down.
                        try? await Task.sleep(for: min(following.interval, .milliseconds(100)))
                    }
                }
            }
            group.addTask {
                await Self.repeating(every: self.lease / 3, failed: failed) { try await self.reconcile() }
            }
            if following.maintains {
                group.addTask {
                    await Self.repeating(every: self.lease, failed: failed) { try await self.maintain() }
                }
            }
        }
    }

    private static func repeating(
        every interval: Duration, failed: @Sendable (any Error) -> Void, _ body: () async throws -> Void
    ) async {
        var reported: ContinuousClock.Instant?
        while !Task.isCancelled {
            do {
                try await body()
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

    // MARK: - Membership and placement

    /// Joins the cluster as reachable at `address` (`host:port` of its line protocol) and
    /// reconciles until it serves every range it is chosen for, caught up from the log.
    public func join(address: String) async throws {
        state.withLock { $0.address = address }
        try await retrying { try await self.keepLease() }
        // Renewed on its own, every third of the lease: a round that opens a large range must
        // not let it lapse.
        let task = Task {
            await Self.repeating(every: self.lease / 3, failed: { _ in }) { try await self.keepLease() }
        }
        renewing.withLock { running in
            running?.cancel()
            running = task
        }
        try await retrying { try await self.reconcile() }
        while state.withLock({ state in state.placement.values.contains { $0.joining.contains(name) } }) {
            try await Task.sleep(for: .milliseconds(50))
            try await retrying { try await self.reconcile() }
        }
    }

    /// `body`, tried again after a failure until the log's deadline has passed since the first
    /// try: a call's own deadline is a share of the lease, and a starting node should not give
    /// up on a PostgreSQL that answers slowly (its renewal loop tries again the same way).
    private func retrying(_ body: () async throws -> Void) async throws {
        let giveUp = ContinuousClock.now + log.configuration.deadline
        while true {
            do {
                return try await body()
            } catch  where ContinuousClock.now < giveUp {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Reads the members and the placement again, without acting on them: a request found no
    /// host for a range in this node's view, which lags PostgreSQL by up to a round.
    public func refresh() async throws {
        let (members, placement) = try await log.view()
        state.withLock { $0.learn(placement, addresses: Self.addresses(of: members)) }
    }

    private static func addresses(of members: [CommandLog.Member]) -> [String: String] {
        Dictionary(members.filter(\.live).map { ($0.name, $0.address) }) { first, _ in first }
    }

    /// One round: reads the members and the placement, moves each range towards its planned hosts by compare-and-set, opens the
    /// ranges this node is chosen for, catches up those it joins and then serves them, and
    /// closes those it no longer hosts.
    public func reconcile() async throws {
        // One round at a time: a round that read an older placement must not publish it after
        // a newer one.
        while !reconciling.withLock({ running in
            defer { running = true }
            return !running
        }) {
            try await Task.sleep(for: .milliseconds(5))
        }
        defer { reconciling.withLock { $0 = false } }
        do {
            try await reconcileRound()
        } catch {
            state.withLock { $0.connectedSince = nil }
            throw error
        }
    }

    /// Renews the node's lease, or joins anew (a new epoch) when its life is over.
    private func keepLease() async throws {
        guard
            renewal.withLock({ running in
                defer { running = true }
                return !running
            })
        else { return }
        defer { renewal.withLock { $0 = false } }
        let (fence, address) = state.withLock { ($0.fence, $0.address) }
        let began = ContinuousClock.now
        if let fence, try await log.renew(fence, lease: lease) {
            state.withLock { $0.leaseHolds = began + lease }
            return
        }
        let epoch = try await log.join(node: name, address: address, lease: lease)
        state.withLock {
            $0.fence = CommandLog.Fence(node: name, epoch: epoch)
            $0.leaseHolds = began + lease
        }
    }

    /// Refuses at once when this node's lease has lapsed by its own clock (cut off from
    /// PostgreSQL for a lease): the log would refuse it too, after its deadline. Starts a
    /// renewal, so that writes go on as soon as PostgreSQL answers again.
    private func requireLease() throws {
        let holds = state.withLock { $0.leaseHolds }
        guard let holds, ContinuousClock.now < holds else {
            // Renewed now rather than at the next turn: PostgreSQL may be back (a failover).
            Task { try? await keepLease() }
            throw ClusterError.unavailable(
                "node \(name) has not renewed its lease for \(lease): it cannot reach PostgreSQL")
        }
    }

    private func reconcileRound() async throws {
        // Other nodes count as gone only once this one has been in touch for a lease: after a
        // failover (or a start) every lease looks lapsed until its node renews it.
        let settled = state.withLock { state in
            let since = state.connectedSince ?? .now
            state.connectedSince = since
            return ContinuousClock.now - since >= lease
        }
        let (members, placement) = try await log.view()
        let live = Set(members.filter(\.live).map(\.name) + [name])
        var current: [Int: CommandLog.Placement] = [:]
        for var range in placement {
            let candidates = settled ? live : live.union(range.hosts)
            let planned = range.planned(live: candidates.sorted(), copies: copies)
            if planned != range, try await log.place(planned) {
                range = planned
                range.version += 1
            }
            current[range.range] = range
        }
        let addresses = Self.addresses(of: members)
        // A range newly opened here (a restart, or chosen) is caught up from the log before the
        // node says it serves it: its file may be far behind.
        let toOpen = current.filter { $0.value.hosts.contains(name) || $0.value.joining.contains(name) }
            .keys.filter { range in state.withLock { $0.replicas[range] == nil && !$0.closing.contains(range) } }
        var opened: [RangeReplica] = []
        if !toOpen.isEmpty {
            let retention = try await log.retention()
            do {
                for range in toOpen.sorted() { opened.append(try await prepare(range, retention[range])) }
            } catch {
                for replica in opened { replica.store.close() }
                throw error
            }
        }
        let now = ContinuousClock.now
        let dropped = state.withLock { state -> [RangeReplica] in
            state.learn(current.values, addresses: addresses)
            for replica in opened { state.replicas[replica.range] = replica }
            // A range this node no longer hosts is still served, and followed, for a lease:
            // until then other nodes may forward to it from their last view.
            for range in state.replicas.keys {
                let mine = current[range].map { $0.hosts.contains(name) || $0.joining.contains(name) } ?? false
                if mine {
                    state.leaving[range] = nil
                } else if state.leaving[range] == nil {
                    state.leaving[range] = now + lease
                }
            }
            let gone = state.leaving.filter { $0.value <= now }.map(\.key)
            for range in gone { state.leaving[range] = nil }
            state.closing.formUnion(gone)
            return gone.compactMap { state.replicas.removeValue(forKey: $0) }
        }
        closeLater(dropped)
        for (range, place) in current.sorted(by: { $0.key < $1.key }) where place.joining.contains(name) {
            guard let replica = replica(of: range) else { continue }
            try await catchUp(replica)
            var served = place
            served.hosts.append(name)
            served.joining.removeAll { $0 == name }
            if try await log.place(served) {
                served.version += 1
                state.withLock { $0.placement[range] = served }
            }
        }
    }

    // MARK: - Snapshots

    /// Opens `range`'s file here and applies the log to its end: first from the range's
    /// snapshot when the file lacks entries the log deleted, or lags the snapshot by
    /// `snapshotEvery` entries or more (a new host, or one long away).
    private func prepare(_ range: Int, _ retention: CommandLog.Retention?) async throws -> RangeReplica {
        let path = Self.path(of: range, in: folder)
        var replica = RangeReplica(range: range, store: try open(path))
        do {
            if let retention,
                retention.truncated > replica.appliedSequence
                    || retention.snapshot - replica.appliedSequence >= snapshotEvery
            {
                replica.store.close()
                try await restore(range, at: path)
                replica = RangeReplica(range: range, store: try open(path))
            }
            try await catchUp(replica)
            return replica
        } catch {
            replica.store.close()
            throw error
        }
    }

    /// Replaces the (closed) file at `path` with `range`'s snapshot.
    private func restore(_ range: Int, at path: String) async throws {
        let incoming = path + ".incoming"
        unlink(incoming)  // what an interrupted restore left
        guard try await log.loadSnapshot(of: range, into: incoming) != nil else {
            throw ClusterError.corruptLog("range \(range)'s log was deleted, but it has no snapshot")
        }
        // The old file's journal first: SQLite would read a `-wal` left beside the new file as
        // part of it.
        for suffix in ["-wal", "-shm", "-journal"] { unlink(path + suffix) }
        guard rename(incoming, path) == 0 else {
            throw ClusterError.invalidConfiguration(
                "cannot move \(incoming) to \(path): \(String(cString: strerror(errno)))")
        }
        let directory = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            Glibc.close(directory)
        }
    }

    /// One round of upkeep: reports how far this node has applied each range it serves
    /// (entries are deleted only once every host has them); for each range it is the first
    /// host of, stores a new snapshot once the last one lags by `snapshotEvery` entries, and
    /// deletes the entries every host has applied and the snapshot holds.
    public func maintain() async throws {
        let (served, first) = state.withLock { state in
            (
                state.replicas.filter { state.placement[$0.key]?.hosts.contains(name) == true },
                Set(state.placement.values.filter { $0.hosts.first == name }.map(\.range))
            )
        }
        try await log.report(node: name, applied: served.mapValues(\.appliedSequence))
        let retention = try await log.retention()
        for range in first.sorted() {
            guard let replica = served[range], var kept = retention[range] else { continue }
            if replica.appliedSequence - kept.snapshot >= snapshotEvery {
                kept.snapshot = try await snapshot(replica)
            }
            if kept.snapshot > kept.truncated { try await log.truncate(range: range) }
        }
    }

    /// Stores an online backup of `replica` as its range's snapshot.
    /// - Returns: The sequence the snapshot holds.
    @discardableResult
    public func snapshot(_ replica: RangeReplica) async throws -> Int64 {
        let path = Self.path(of: replica.range, in: folder) + ".outgoing"
        unlink(path)  // what an interrupted snapshot left
        defer { unlink(path) }
        let report = try await NIOThreadPool.singleton.runIfActive {
            try MemoryStore.backup(path: replica.store.path, to: path)
        }
        guard report.check.isSound else {
            throw ClusterError.corruptLog(
                "the snapshot of range \(replica.range) fails its check: \(report.check.problems.joined(separator: "; "))"
            )
        }
        _ = try await log.storeSnapshot(of: replica.range, seq: report.check.appliedIndex, from: path)
        return report.check.appliedIndex
    }
}
