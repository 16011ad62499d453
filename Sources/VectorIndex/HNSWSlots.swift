import ContextModel

/// What each slot of a graph holds besides its code and its links: the node's id, the owner's
/// handle for it (see `FlatIndex`), its user (as a small number, so the scope check in a walk
/// compares integers), its filter attributes and whether searches may return it. Grown by `appendFree`, filled by `occupy`, emptied by `free`.
struct SlotTable: Sendable {
    enum Status: UInt8 {
        /// No node: the slot waits for reuse.
        case free
        /// Linked (or about to be) but not yet returned by searches.
        case pending
        case live
    }

    private(set) var ids: [String] = []
    private(set) var handles: [Int32] = []
    private(set) var status: [Status] = []
    private(set) var attributes: [RowAttributes] = []
    /// Each slot's user number (see `users`).
    private(set) var userOfSlot: [Int32] = []
    /// Keyed by bytes, as SQLite compares text (see ExactString).
    private var slots: [ExactString: Int32] = [:]
    private(set) var users = UserNumbers()
    /// Slots whose status is `live`.
    private(set) var liveCount = 0

    var count: Int { ids.count }

    mutating func reserveCapacity(_ count: Int) {
        ids.reserveCapacity(count)
        handles.reserveCapacity(count)
        status.reserveCapacity(count)
        attributes.reserveCapacity(count)
        userOfSlot.reserveCapacity(count)
        slots.reserveCapacity(count)
    }

    /// The slot of `id`'s node, if it has one.
    func slot(of id: String) -> Int32? { slots[ExactString(id)] }

    /// Adds a free slot at the end and returns it.
    mutating func appendFree() -> Int32 {
        ids.append("")
        handles.append(-1)
        status.append(.free)
        attributes.append(RowAttributes(session: nil, role: nil, createdAt: 0))
        userOfSlot.append(0)
        return Int32(ids.count - 1)
    }

    /// Puts `id`'s node in the free `slot`.
    mutating func occupy(
        _ slot: Int32, id: String, handle: Int32, user: String, attributes: RowAttributes, status: Status
    ) {
        let i = Int(slot)
        precondition(self.status[i] == .free && status != .free && slots[ExactString(id)] == nil)
        ids[i] = id
        handles[i] = handle
        self.status[i] = status
        self.attributes[i] = attributes
        userOfSlot[i] = users.take(user)
        slots[ExactString(id)] = slot
        if status == .live { liveCount += 1 }
    }

    /// Replaces the filter attributes of the node in `slot`.
    mutating func setAttributes(_ slot: Int32, _ attributes: RowAttributes) {
        self.attributes[Int(slot)] = attributes
    }

    /// Lets searches return the node in `slot`; false when it was not pending.
    mutating func publish(_ slot: Int32) -> Bool {
        guard status[Int(slot)] == .pending else { return false }
        status[Int(slot)] = .live
        liveCount += 1
        return true
    }

    /// Empties `slot`.
    mutating func free(_ slot: Int32) {
        let i = Int(slot)
        guard status[i] != .free else { return }
        if status[i] == .live { liveCount -= 1 }
        slots[ExactString(ids[i])] = nil
        users.release(userOfSlot[i])
        ids[i] = ""
        handles[i] = -1
        status[i] = .free
    }

    /// Bytes held (an estimate).
    var memoryBytes: Int {
        let perSlot =
            2 * MemoryLayout<Int32>.stride + MemoryLayout<String>.stride + MemoryLayout<RowAttributes>.stride + 1
        return ids.count * perSlot + slots.count * (MemoryLayout<String>.stride + 4)
    }
}

/// Small numbers for users, each counting its nodes. A number whose last node goes is freed for
/// the next new user, so the table does not grow with every user ever seen.
struct UserNumbers: Sendable {
    private var numbers: [ExactString: Int32] = [:]
    private var userOfNumber: [ExactString] = []
    private var nodesOfNumber: [Int] = []
    private var freeNumbers: [Int32] = []

    /// The number of `user`, if they have a node.
    func number(of user: String) -> Int32? { numbers[ExactString(user)] }

    /// Numbers in use or free: the bound of every number.
    var count: Int { userOfNumber.count }

    /// How many nodes `user` has.
    func nodes(of user: String) -> Int { number(of: user).map { nodesOfNumber[Int($0)] } ?? 0 }

    /// The number of `user`, counting one more node of theirs (a new user takes a freed number
    /// when there is one).
    mutating func take(_ user: String) -> Int32 {
        let key = ExactString(user)
        if let number = numbers[key] {
            nodesOfNumber[Int(number)] += 1
            return number
        }
        let number: Int32
        if let reused = freeNumbers.popLast() {
            number = reused
            userOfNumber[Int(number)] = key
            nodesOfNumber[Int(number)] = 1
        } else {
            number = Int32(userOfNumber.count)
            userOfNumber.append(key)
            nodesOfNumber.append(1)
        }
        numbers[key] = number
        return number
    }

    /// Counts one node of user `number` fewer; frees the number with the user's last node.
    mutating func release(_ number: Int32) {
        let i = Int(number)
        nodesOfNumber[i] -= 1
        guard nodesOfNumber[i] == 0 else { return }
        numbers[userOfNumber[i]] = nil
        userOfNumber[i] = ExactString("")
        freeNumbers.append(number)
    }
}
