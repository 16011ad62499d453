import Synchronization

/// A least-recently-used map from (model, scope, text) to its embedding, bounded in bytes, so the
/// same text is not embedded twice while it stays in the cache. Thread-safe.
///
/// The scope is the tenant whose request embeds the text (the server passes the user, or the
/// key for `embed`): a hit answers in a fraction of a model run, so a cache shared by tenants
/// would tell one of them, by timing, which texts another has stored.
///
/// An entry costs its text, model name and vector plus a fixed overhead; entries larger than
/// `maximumEntryBytes` (a whole 8 MiB request line, say) are not kept, so one request cannot
/// empty the cache.
final class EmbeddingCache: Sendable {
    struct Key: Hashable {
        var model: String
        var scope: String
        var text: String

        var bytes: Int { model.utf8.count + scope.utf8.count + text.utf8.count }
    }

    /// Bookkeeping per entry beyond its strings and vector (hash slot, links, array headers).
    static let entryOverhead = 128

    /// Entries in a doubly linked list threaded through arrays: head is the most recent.
    /// Evicted slots go to `free` for reuse.
    private struct State {
        var slots: [Key: Int] = [:]
        var keys: [Key?] = []
        var vectors: [[Float]] = []
        var costs: [Int] = []
        var previous: [Int] = []
        var next: [Int] = []
        var free: [Int] = []
        var head = -1
        var tail = -1
        var bytes = 0
        var hits = 0
        var misses = 0

        mutating func unlink(_ slot: Int) {
            if previous[slot] >= 0 { next[previous[slot]] = next[slot] } else { head = next[slot] }
            if next[slot] >= 0 { previous[next[slot]] = previous[slot] } else { tail = previous[slot] }
        }

        mutating func pushFront(_ slot: Int) {
            previous[slot] = -1
            next[slot] = head
            if head >= 0 { previous[head] = slot }
            head = slot
            if tail < 0 { tail = slot }
        }

        mutating func evictLeastRecent() {
            let slot = tail
            unlink(slot)
            slots[keys[slot]!] = nil
            keys[slot] = nil
            vectors[slot] = []
            bytes -= costs[slot]
            free.append(slot)
        }
    }

    /// The most bytes the entries may take together.
    let byteCapacity: Int
    /// The most bytes one entry may take (default: a sixteenth of the capacity).
    let maximumEntryBytes: Int
    private let state = Mutex(State())

    init(byteCapacity: Int, maximumEntryBytes: Int? = nil) {
        self.byteCapacity = byteCapacity
        self.maximumEntryBytes = min(byteCapacity, maximumEntryBytes ?? byteCapacity / 16)
    }

    /// The cached vector, counting a hit or a miss.
    func get(_ key: Key) -> [Float]? {
        state.withLock { state in
            guard let slot = state.slots[key] else {
                state.misses += 1
                return nil
            }
            state.hits += 1
            state.unlink(slot)
            state.pushFront(slot)
            return state.vectors[slot]
        }
    }

    /// Drops every entry of `scope` (a tenant's texts, after its memories were forgotten) and
    /// returns how many there were; with `count` alone, only counts them. A scan of the entries.
    func drop(scope: String, countOnly: Bool = false) -> Int {
        state.withLock { state in
            var found = 0
            for slot in state.keys.indices {
                guard let key = state.keys[slot], key.scope.utf8.elementsEqual(scope.utf8) else { continue }
                found += 1
                guard !countOnly else { continue }
                state.unlink(slot)
                state.slots[key] = nil
                state.keys[slot] = nil
                state.vectors[slot] = []
                state.bytes -= state.costs[slot]
                state.free.append(slot)
            }
            return found
        }
    }

    func put(_ key: Key, _ vector: [Float]) {
        let cost = key.bytes + vector.count * MemoryLayout<Float>.stride + Self.entryOverhead
        guard cost <= maximumEntryBytes else { return }
        state.withLock { state in
            if let slot = state.slots[key] {
                state.unlink(slot)
                state.bytes -= state.costs[slot]
                state.free.append(slot)
                state.slots[key] = nil
                state.keys[slot] = nil
            }
            while state.bytes + cost > byteCapacity { state.evictLeastRecent() }
            let slot: Int
            if let reused = state.free.popLast() {
                slot = reused
                state.keys[slot] = key
                state.vectors[slot] = vector
                state.costs[slot] = cost
            } else {
                slot = state.keys.count
                state.keys.append(key)
                state.vectors.append(vector)
                state.costs.append(cost)
                state.previous.append(-1)
                state.next.append(-1)
            }
            state.bytes += cost
            state.slots[key] = slot
            state.pushFront(slot)
        }
    }

    /// Hits, misses, entries and the bytes they take, so far.
    var statistics: (hits: Int, misses: Int, entries: Int, bytes: Int) {
        state.withLock { ($0.hits, $0.misses, $0.slots.count, $0.bytes) }
    }
}
