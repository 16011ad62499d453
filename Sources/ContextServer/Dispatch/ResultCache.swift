import ContextProtocol
import MemoryStore
import Synchronization

/// Answers of `search` and `prompt`, kept by their request in canonical form (the op's codec
/// writes its fields in one order) and the user's `Generation` when they were computed: an
/// answer is given again only while the user's memories have not changed since, so no answer
/// is stale after a write is acknowledged, and only before its deadline, the space's next expiry
/// when it was computed (an expired memory leaves reads at once). Bounded in bytes, least
/// recently used first out: an entry counts the storage it holds (its arrays' capacity, their
/// headers, the slot and the index entry), not only its bytes of JSON, so many small answers
/// cannot hold many times the budget.
final class ResultCache: Sendable {
    private let lru: Mutex<LRU>
    let capacity: Int

    init(capacityBytes: Int) {
        capacity = capacityBytes
        lru = Mutex(LRU())
    }

    /// The answer's fields kept for `request` at `generation` and time `now` (unix ms),
    /// counting a hit or a miss.
    func answer(for request: [UInt8], at generation: Generation, now: Int64) -> [UInt8]? {
        lru.withLock { lru in
            guard let index = lru.index[request] else {
                lru.misses += 1
                return nil
            }
            guard lru.entries[index].generation == generation, lru.entries[index].deadline.map({ now < $0 }) ?? true
            else {
                lru.remove(index)
                lru.misses += 1
                return nil
            }
            lru.touch(index)
            lru.hits += 1
            return lru.entries[index].answer
        }
    }

    /// Drops the answers about `user` (after a forget: stale already, but they hold its words);
    /// returns how many there were, or with `countOnly`, how many there are.
    func drop(user: String, countOnly: Bool = false) -> Int {
        lru.withLock { lru in
            let slots = lru.index.values.filter { lru.entries[$0].user.utf8.elementsEqual(user.utf8) }
            if !countOnly { for slot in slots { lru.remove(slot) } }
            return slots.count
        }
    }

    /// Keeps `answer` for `request` about `user`, computed at `generation`, until `deadline`
    /// (unix ms; nil: no deadline).
    func store(
        _ answer: [UInt8], for request: [UInt8], user: String, at generation: Generation, until deadline: Int64?
    ) {
        let size = LRU.Entry.cost(request: request, answer: answer, user: user)
        guard size <= capacity / 8 else { return }  // one answer never crowds out the rest
        lru.withLock { lru in
            if let index = lru.index[request] { lru.remove(index) }
            while lru.bytes + size > capacity, let oldest = lru.oldest { lru.remove(oldest) }
            lru.insert(
                LRU.Entry(request: request, answer: answer, user: user, generation: generation, deadline: deadline))
        }
    }

    /// The bytes an entry of `request` and `answer` counts as (see `LRU.Entry.cost`).
    static func cost(request: [UInt8], answer: [UInt8], user: String) -> Int {
        LRU.Entry.cost(request: request, answer: answer, user: user)
    }

    var counters: CacheCounters {
        lru.withLock { CacheCounters(hits: $0.hits, misses: $0.misses, entries: $0.index.count, bytes: $0.bytes) }
    }

    /// Entries in slots of one array, linked from the most recently used (`newest`) to the least.
    private struct LRU {
        struct Entry {
            var request: [UInt8]
            var answer: [UInt8]
            /// Whose memories the answer is about.
            var user: String
            var generation: Generation
            var deadline: Int64?
            var newer: Int? = nil
            var older: Int? = nil

            /// What an entry holds: both arrays' storage and headers (with malloc's rounding),
            /// its slot, and its key's place in the index.
            static func cost(request: [UInt8], answer: [UInt8], user: String) -> Int {
                request.capacity + answer.capacity + 2 * (32 + 16) + MemoryLayout<Entry>.stride + 64
                    + user.utf8.count
            }

            var cost: Int { Self.cost(request: request, answer: answer, user: user) }
        }

        var entries: [Entry] = []
        var free: [Int] = []
        var index: [[UInt8]: Int] = [:]
        var newest: Int?
        var oldest: Int?
        var bytes = 0
        var hits = 0
        var misses = 0

        mutating func insert(_ entry: Entry) {
            let slot: Int
            if let reused = free.popLast() {
                slot = reused
                entries[slot] = entry
            } else {
                slot = entries.count
                entries.append(entry)
            }
            index[entry.request] = slot
            bytes += entry.cost
            link(slot)
        }

        mutating func remove(_ slot: Int) {
            unlink(slot)
            index[entries[slot].request] = nil
            bytes -= entries[slot].cost
            entries[slot].request = []
            entries[slot].answer = []
            entries[slot].user = ""
            free.append(slot)
        }

        mutating func touch(_ slot: Int) {
            unlink(slot)
            link(slot)
        }

        /// Makes `slot` the newest.
        private mutating func link(_ slot: Int) {
            entries[slot].newer = nil
            entries[slot].older = newest
            if let newest { entries[newest].newer = slot }
            newest = slot
            if oldest == nil { oldest = slot }
        }

        private mutating func unlink(_ slot: Int) {
            let (newer, older) = (entries[slot].newer, entries[slot].older)
            if let newer { entries[newer].older = older } else { newest = older }
            if let older { entries[older].newer = newer } else { oldest = newer }
        }
    }
}
