import ContextModel

/// A node's links as stored: `[level, n0, links0..., n1, links1..., ..., nL, linksL...]`, Int32
/// each: the level, then for every layer from 0 up to the level a count and that many slots.
public enum HNSWNodeRecord {
    public static func encode(levels: [[Int32]]) -> [Int32] {
        var record: [Int32] = [Int32(levels.count - 1)]
        for layer in levels {
            record.append(Int32(layer.count))
            record.append(contentsOf: layer)
        }
        return record
    }

    /// The links of each layer, or nil when the record is malformed.
    public static func decode(_ record: [Int32]) -> [[Int32]]? {
        guard let level = record.first, level >= 0 else { return nil }
        var layers: [[Int32]] = []
        var at = 1
        for _ in 0...Int(level) {
            guard at < record.count else { return nil }
            let count = Int(record[at])
            guard count >= 0, at + 1 + count <= record.count else { return nil }
            layers.append(Array(record[at + 1..<at + 1 + count]))
            at += 1 + count
        }
        return at == record.count ? layers : nil
    }
}

/// Why a stored graph cannot be loaded.
public struct HNSWRestoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

extension HNSWIndex {
    /// The stored form of `slot`'s node (see `HNSWNodeRecord`).
    public func record(of slot: Int32) -> [Int32] {
        HNSWNodeRecord.encode(
            levels: (0...Int(graph.levels[Int(slot)])).map { Array(graph.links(slot, level: $0)) })
    }

    /// Whether `slot` holds a node (published or not) rather than waiting for reuse.
    public func holdsNode(_ slot: Int32) -> Bool { graph.holdsNode(slot) }

    /// The slots changed since the last call, for the owner to write out.
    public mutating func takeChangedSlots() -> Set<Int32> {
        defer { graph.changedSlots = [] }
        return graph.changedSlots
    }

    /// Puts back a stored, published node. Call `finishRestoring` once all are back.
    /// - Precondition: `vector` is in the metric's prepared form.
    public mutating func restore(
        slot: Int32, id: String, user: String, vector: [Float], attributes: RowAttributes, record: [Int32],
        handle: Int32 = -1
    ) throws(HNSWRestoreError) {
        guard vector.count == dimension else {
            throw HNSWRestoreError(description: "node \(slot) (\(id)) has \(vector.count) components, not \(dimension)")
        }
        guard slot >= 0, let layers = HNSWNodeRecord.decode(record) else {
            throw HNSWRestoreError(description: "node \(slot) (\(id)) has a malformed link record")
        }
        for (layer, neighbours) in layers.enumerated() where neighbours.count > (layer == 0 ? 2 : 1) * parameters.M {
            throw HNSWRestoreError(description: "node \(slot) has \(neighbours.count) links on layer \(layer)")
        }
        while slotCount <= Int(slot) {
            _ = graph.appendFreeSlot()
            _ = slots.appendFree()
        }
        guard !contains(id: id), graph.restore(slot, layers: layers) else {
            throw HNSWRestoreError(description: "node \(slot) (\(id)) is stored twice")
        }
        codes.set(slot, to: vector)
        slots.occupy(slot, id: id, handle: handle, user: user, attributes: attributes, status: .live)
    }

    /// Checks every link of the restored nodes, counts in-degrees and collects the free slots.
    public mutating func finishRestoring(entryPoint: Int32) throws(HNSWRestoreError) {
        try graph.finishRestoring(entryPoint: entryPoint, empty: slots.liveCount == 0)
    }
}

/// An integrity check of a stored graph, independent of `HNSWIndex`'s own code: every link
/// points at a node on that layer, no list overflows, the entry point is a node of the top
/// level, and every node is reachable on layer 0 from the entry point.
public enum HNSWGraphCheck {
    /// The problems found, at most `limit`; empty when the graph is sound.
    public static func problems(
        nodes: [Int32: [[Int32]]], entryPoint: Int32, M: Int, limit: Int = 20
    ) -> [String] {
        var problems: [String] = []
        func report(_ text: String) { if problems.count < limit { problems.append(text) } }
        guard !nodes.isEmpty else {
            if entryPoint >= 0 { report("the graph is empty but has entry point \(entryPoint)") }
            return problems
        }
        guard let entry = nodes[entryPoint] else {
            report("the entry point \(entryPoint) is not a node")
            return problems
        }
        let top = nodes.values.map(\.count).max()!
        if entry.count != top { report("the entry point has level \(entry.count - 1), the graph \(top - 1)") }
        for (slot, layers) in nodes {
            for (layer, links) in layers.enumerated() {
                if links.count > (layer == 0 ? 2 * M : M) {
                    report("node \(slot) has \(links.count) links on layer \(layer)")
                }
                if Set(links).count != links.count { report("node \(slot) repeats a link on layer \(layer)") }
                for target in links {
                    if target == slot { report("node \(slot) links to itself on layer \(layer)") }
                    guard let other = nodes[target] else {
                        report("node \(slot) links to \(target) on layer \(layer), which is not a node")
                        continue
                    }
                    if other.count <= layer {
                        report("node \(slot) links to \(target) on layer \(layer), above its level")
                    }
                }
            }
        }
        var reached: Set<Int32> = [entryPoint]
        var queue = [entryPoint]
        while let slot = queue.popLast() {
            for target in nodes[slot]?.first ?? [] where nodes[target] != nil && reached.insert(target).inserted {
                queue.append(target)
            }
        }
        if reached.count != nodes.count {
            let lost = nodes.keys.filter { !reached.contains($0) }.sorted()
            report(
                "\(lost.count) of \(nodes.count) nodes are unreachable from the entry point (e.g. \(lost.prefix(5).map(String.init).joined(separator: ", ")))"
            )
        }
        return problems
    }
}

extension HNSWIndex {
    /// The problems `HNSWGraphCheck` finds in this graph's nodes (published or not).
    public func integrityProblems() -> [String] {
        var nodes: [Int32: [[Int32]]] = [:]
        for slot in 0..<Int32(slotCount) where holdsNode(slot) {
            nodes[slot] = (0...Int(graph.levels[Int(slot)])).map { Array(graph.links(slot, level: $0)) }
        }
        return HNSWGraphCheck.problems(nodes: nodes, entryPoint: entryPoint, M: parameters.M)
    }
}
