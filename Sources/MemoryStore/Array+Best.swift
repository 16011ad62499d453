extension Array {
    /// The first `k` elements in the order `isBetter` ranks them: what `sorted(by: isBetter)
    /// .prefix(k)` gives when the order is total (ties broken, as every ranking here is), at
    /// the cost of n log k: a heap of the `k` best seen, its root the worst of them.
    func best(_ k: Int, by isBetter: (Element, Element) -> Bool) -> [Element] {
        guard k > 0 else { return [] }
        // Small or nearly whole: a sort is as cheap.
        guard count > 4 * k else { return Array(sorted(by: isBetter).prefix(k)) }
        var heap: [Element] = []
        heap.reserveCapacity(k)
        func siftDown(_ start: Int) {
            var parent = start
            while true {
                let left = 2 * parent + 1
                guard left < heap.count else { return }
                var worse = left
                if left + 1 < heap.count, isBetter(heap[left], heap[left + 1]) { worse = left + 1 }
                guard isBetter(heap[parent], heap[worse]) else { return }
                heap.swapAt(parent, worse)
                parent = worse
            }
        }
        for element in self {
            if heap.count < k {
                heap.append(element)
                var child = heap.count - 1
                while child > 0, isBetter(heap[(child - 1) / 2], heap[child]) {
                    heap.swapAt(child, (child - 1) / 2)
                    child = (child - 1) / 2
                }
            } else if isBetter(element, heap[0]) {
                heap[0] = element
                siftDown(0)
            }
        }
        return heap.sorted(by: isBetter)
    }
}
