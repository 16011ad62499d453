import CKernels
import Synchronization

/// Which slots a search has seen: a generation counter per slot, so a reset is O(1). A class
/// over raw memory, so that marking a slot in the inner loop costs no copy-on-write check.
final class VisitedSet: @unchecked Sendable {
    private var marks: UnsafeMutablePointer<UInt32>
    private var capacity: Int
    private var generation: UInt32 = 1
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        marks = .allocate(capacity: self.capacity)
        marks.initialize(repeating: 0, count: self.capacity)
    }

    deinit { marks.deallocate() }

    /// Makes room for `capacity` slots and starts a new walk.
    func prepare(capacity: Int) {
        if capacity > self.capacity {
            let grown = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity * 2)
            grown.initialize(repeating: 0, count: capacity * 2)
            marks.deallocate()
            marks = grown
            self.capacity = capacity * 2
            generation = 0
        }
        reset()
    }

    /// Starts loading `slot`'s mark, to be tested soon.
    @inline(__always)
    func prefetch(_ slot: Int32) { ck_prefetch(marks + Int(slot)) }

    /// Marks `slot`; false when it was already marked.
    @inline(__always)
    func insert(_ slot: Int32) -> Bool {
        let i = Int(slot)
        if marks[i] == generation { return false }
        marks[i] = generation
        count += 1
        return true
    }

    func reset() {
        generation &+= 1
        count = 0
        if generation == 0 {
            marks.update(repeating: 0, count: capacity)
            generation = 1
        }
    }
}

/// A binary heap of (score, slot): the largest score on top, or the smallest.
struct ScoreHeap {
    private var items: [(score: Float, slot: Int32)] = []
    let maxOnTop: Bool

    init(maxOnTop: Bool) { self.maxOnTop = maxOnTop }

    var count: Int { items.count }
    var top: (score: Float, slot: Int32)? { items.first }

    @inline(__always)
    private func above(_ a: Float, _ b: Float) -> Bool { maxOnTop ? a > b : a < b }

    mutating func push(_ score: Float, _ slot: Int32) {
        items.append((score, slot))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard above(items[child].score, items[parent].score) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (Float, Int32)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var best = parent
                if left < items.count, above(items[left].score, items[best].score) { best = left }
                if right < items.count, above(items[right].score, items[best].score) { best = right }
                if best == parent { break }
                items.swapAt(parent, best)
                parent = best
            }
        }
        return (first.score, first.slot)
    }

    func sortedBestFirst() -> [(score: Float, slot: Int32)] {
        items.sorted { $0.score > $1.score }
    }
}

/// Visited sets handed out to concurrent searches and taken back, so each search reuses one.
final class ScratchPool: Sendable {
    private let free = Mutex<[VisitedSet]>([])

    func take(capacity: Int) -> VisitedSet {
        let set = free.withLock { $0.popLast() } ?? VisitedSet(capacity: capacity)
        set.prepare(capacity: capacity)
        return set
    }

    func give(_ set: VisitedSet) {
        free.withLock { $0.append(set) }
    }
}
