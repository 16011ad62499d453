import ContextModel
import VectorIndex

/// The graph's part of a write to an hnsw space, each step under the lock it needs: a node's slot
/// is allocated and its links written under the exclusive lock, while the search for its
/// neighbours and the pass over every link of a removal (the costly parts) run under the shared
/// one, next to searches. New nodes stay unpublished, so searches skip them, until the store
/// publishes them after its commit. Used by one writer at a time (the store's write lock).
struct GraphWriter {
    let state: ReadWriteBox<MemoryStore.State>

    /// Removes the nodes of `keys` (see `MemoryStore.key`) and repairs the links around them.
    func remove(_ keys: [String]) {
        guard let plan = state.read({ $0.graph?.planRemoval(ids: keys) }) else { return }
        state.write { _ = $0.graph?.apply(plan) }
    }

    /// Links a node for each memory (replacing the node its id had). Returns the new slots, for
    /// the store to publish once the write is committed.
    func link(_ memories: [Memory]) -> [Int32] {
        remove(memories.map(MemoryStore.key))
        var pending: [Int32] = []
        pending.reserveCapacity(memories.count)
        for memory in memories {
            let attributes = memory.attributes
            let key = MemoryStore.key(memory)
            guard
                let slot = state.write({ state in
                    // The memory's handle: its own when it replaces one, else a new one.
                    let handle = state.handle(for: key)
                    return state.graph?.allocate(
                        id: key, user: memory.user, vector: memory.vector, attributes: attributes,
                        handle: handle)
                }),
                let plan = state.read({ $0.graph?.plan(for: slot) })
            else { break }
            state.write { $0.graph?.apply(plan) }
            pending.append(slot)
        }
        return pending
    }

    /// A node as the file stores it (with its memory's key), or a slot that no longer holds one.
    enum NodeChange {
        case saved(slot: Int32, key: String, links: [Int32])
        case removed(slot: Int32)
    }

    /// The nodes changed since the last call, in slot order, and the entry point: what the
    /// write saves in its transaction.
    func takeChanges() -> (nodes: [NodeChange], entryPoint: Int32) {
        guard let changed = state.write({ $0.graph?.takeChangedSlots() }) else { return ([], -1) }
        return state.read { state in
            guard let graph = state.graph else { return ([], -1) }
            let nodes = changed.sorted().map { slot in
                graph.holdsNode(slot)
                    ? NodeChange.saved(slot: slot, key: graph.id(at: slot), links: graph.record(of: slot))
                    : .removed(slot: slot)
            }
            return (nodes, graph.entryPoint)
        }
    }
}
