import Synchronization

/// A bounded least-recently-used map from (model, text) to its embedding, so the same text is
/// not embedded twice while it stays in the cache. Thread-safe.
final class EmbeddingCache: Sendable {
    struct Key: Hashable {
        var model: String
        var text: String
    }

    /// Entries in a doubly linked list threaded through an array: head is the most recent.
    private struct State {
        var slots: [Key: Int] = [:]
        var keys: [Key] = []
        var vectors: [[Float]] = []
        var previous: [Int] = []
        var next: [Int] = []
        var head = -1
        var tail = -1
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
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = capacity
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

    func put(_ key: Key, _ vector: [Float]) {
        guard capacity > 0 else { return }
        state.withLock { state in
            if let slot = state.slots[key] {
                state.vectors[slot] = vector
                state.unlink(slot)
                state.pushFront(slot)
                return
            }
            let slot: Int
            if state.keys.count < capacity {
                slot = state.keys.count
                state.keys.append(key)
                state.vectors.append(vector)
                state.previous.append(-1)
                state.next.append(-1)
            } else {
                // Full: reuse the least recently used slot.
                slot = state.tail
                state.unlink(slot)
                state.slots[state.keys[slot]] = nil
                state.keys[slot] = key
                state.vectors[slot] = vector
            }
            state.slots[key] = slot
            state.pushFront(slot)
        }
    }

    /// Hits, misses and entries so far.
    var statistics: (hits: Int, misses: Int, entries: Int) {
        state.withLock { ($0.hits, $0.misses, $0.slots.count) }
    }
}
