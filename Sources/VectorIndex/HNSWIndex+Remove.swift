import ContextModel

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
    /// kept), so a batch of removals costs one pass, not one per node. `planRemoval` makes that
    /// pass without changing the graph, `apply` writes the result; `remove` is both.
    @discardableResult
    public mutating func remove(ids: some Sequence<String>) -> Int {
        apply(planRemoval(ids: ids))
    }

    /// What removing some nodes changes: the nodes and, for every node that linked to one of
    /// them, its repaired links per layer.
    public struct RemovalPlan: Sendable {
        var doomed: [Int32] = []
        var repairs: [(node: Int32, layer: Int, links: [Int32])] = []
    }

    /// Computes a removal without changing anything: the pass over every link and the scoring
    /// of the repairs, the costly part, can run under a shared lock next to searches. The graph
    /// must not change before `apply`.
    public func planRemoval(ids: some Sequence<String>) -> RemovalPlan {
        var plan = RemovalPlan()
        var isDoomed = [Bool](repeating: false, count: slotCount)
        for id in ids {
            // An id named twice is removed once.
            if let slot = slots[ExactString(id)], !isDoomed[Int(slot)] {
                isDoomed[Int(slot)] = true
                plan.doomed.append(slot)
            }
        }
        guard !plan.doomed.isEmpty else { return plan }
        for node in 0..<Int32(slotCount) where status[Int(node)] != .free && !isDoomed[Int(node)] {
            for layer in 0...Int(levels[Int(node)]) {
                guard links(node, level: layer).contains(where: { isDoomed[Int($0)] }) else { continue }
                let current = links(node, level: layer)
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
                plan.repairs.append((node, layer, kept))
            }
        }
        return plan
    }

    /// Applies a plan from `planRemoval`: writes the repaired links, frees the removed nodes'
    /// slots, and re-attaches any node left without in-links. Returns how many nodes were removed.
    @discardableResult
    public mutating func apply(_ plan: RemovalPlan) -> Int {
        let doomed = plan.doomed
        guard !doomed.isEmpty else { return 0 }
        for slot in doomed {
            slots[ExactString(ids[Int(slot)])] = nil
            if status[Int(slot)] == .live { liveCount -= 1 }
        }
        var orphans: [Int32] = []
        for repair in plan.repairs { orphans += setLinks(repair.node, level: repair.layer, repair.links) }
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
        if entryPoint >= 0, doomed.contains(entryPoint) {
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
