extension HNSWIndex {
    /// Removes the nodes of `ids` and repairs the graph around them (after FreshDiskANN): a node
    /// that linked to a removed one keeps its other links and fills the freed places from the
    /// removed node's links on that layer, diverse ones first (the heuristic), then the closest.
    /// Re-selecting the whole list instead lost recall: deleting half of a graph and inserting
    /// it again gave 0.91 against 0.94 for a fresh build, keeping the survivors 0.94. The
    /// removed slots are then free for reuse; no link points at them. Returns how many nodes
    /// were removed.
    ///
    /// Finding who links to a removed node takes one pass over all links (no reverse links are
    /// kept), so a batch of removals costs one pass, not one per node.
    @discardableResult
    public mutating func remove(ids: some Sequence<String>) -> Int {
        var doomed: [Int32] = []
        for id in ids {
            guard let slot = slots.removeValue(forKey: ExactString(id)) else { continue }
            if status[Int(slot)] == .live { liveCount -= 1 }
            doomed.append(slot)
        }
        guard !doomed.isEmpty else { return 0 }
        var isDoomed = [Bool](repeating: false, count: slotCount)
        for slot in doomed { isDoomed[Int(slot)] = true }

        var orphans: [Int32] = []
        for node in 0..<Int32(slotCount) where status[Int(node)] != .free && !isDoomed[Int(node)] {
            for layer in 0...Int(levels[Int(node)]) {
                guard links(node, level: layer).contains(where: { isDoomed[Int($0)] }) else { continue }
                // A copy: a slice would keep the link array shared, and writing the links back
                // would then copy all of it (13 MB for 100,000 nodes) for every node repaired.
                let current = Array(links(node, level: layer))
                // The links that survive stay; the removed ones' places go to the removed
                // nodes' own links, the closest diverse ones first (the heuristic), then the closest.
                var kept = current.filter { !isDoomed[Int($0)] }
                var seen = Set(kept)
                seen.insert(node)
                var candidates: [Int32] = []
                for gone in current where isDoomed[Int(gone)] {
                    for neighbour in links(gone, level: layer)
                    where !isDoomed[Int(neighbour)] && seen.insert(neighbour).inserted {
                        candidates.append(neighbour)
                    }
                }
                let maxLinks = layer == 0 ? maxLinks0 : parameters.M
                let ranked = scored(candidates, from: node)
                for candidate in ranked where kept.count < maxLinks && isDiverse(candidate, from: kept) {
                    kept.append(candidate.slot)
                }
                var inKept = Set(kept)
                for candidate in ranked where kept.count < maxLinks && inKept.insert(candidate.slot).inserted {
                    kept.append(candidate.slot)
                }
                orphans += setLinks(node, level: layer, kept)
            }
        }
        for slot in doomed {
            for layer in 0...Int(levels[Int(slot)]) { orphans += setLinks(slot, level: layer, []) }
            let i = Int(slot)
            status[i] = .free
            releaseUserNumber(userOfSlot[i])
            levels[i] = 0
            upper[i] = []
            self.ids[i] = ""
            freeSlots.append(slot)
        }
        if entryPoint >= 0, isDoomed[Int(entryPoint)] {
            entryPoint = -1
            topLevel = -1
            for node in 0..<slotCount where status[node] != .free && Int(levels[node]) > topLevel {
                entryPoint = Int32(node)
                topLevel = Int(levels[node])
            }
        }
        reattach(orphans)
        return doomed.count
    }
}
