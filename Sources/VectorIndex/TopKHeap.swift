/// A bounded min-heap that keeps the `capacity` best (score, id) pairs seen so far.
///
/// "Better" means a higher score, or an equal score with a smaller id. The root is the worst
/// entry kept, so deciding whether a new row gets in costs one comparison.
struct TopKHeap {
    struct Entry {
        var score: Float
        var row: Int
        var id: String
    }

    private(set) var entries: [Entry] = []
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        entries.reserveCapacity(capacity)
    }

    var isFull: Bool { entries.count >= capacity }

    @inline(__always)
    private static func isWorse(_ a: Entry, than b: Entry) -> Bool {
        a.score < b.score || (a.score == b.score && a.id > b.id)
    }

    /// Whether a row with this score and id would displace the current worst entry.
    @inline(__always)
    func admits(score: Float, id: String) -> Bool {
        let worst = entries[0]
        return score > worst.score || (score == worst.score && id < worst.id)
    }

    /// Inserts the entry, evicting the worst one when full. Call `admits` first when full.
    mutating func insert(score: Float, row: Int, id: String) {
        guard capacity > 0 else { return }
        let entry = Entry(score: score, row: row, id: id)
        if entries.count < capacity {
            entries.append(entry)
            siftUp(entries.count - 1)
        } else {
            entries[0] = entry
            siftDown(0)
        }
    }

    private mutating func siftUp(_ index: Int) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.isWorse(entries[child], than: entries[parent]) else { return }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var parent = index
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var worst = parent
            if left < entries.count, Self.isWorse(entries[left], than: entries[worst]) { worst = left }
            if right < entries.count, Self.isWorse(entries[right], than: entries[worst]) { worst = right }
            if worst == parent { return }
            entries.swapAt(parent, worst)
            parent = worst
        }
    }

    /// The kept entries, best first.
    func sortedBestFirst() -> [Entry] {
        entries.sorted { Self.isWorse($1, than: $0) }
    }
}
