import ContextModel
import Synchronization

/// When a user's memories last changed, for caches of results: a result computed after reading
/// `generation(of:)` is current for as long as that generation is. Every write counts its
/// users' changes after its transaction commits and its indexes are published, and before it
/// returns (so before the server acknowledges it); what changes many users at once (the expiry
/// purge, a reload) moves the whole space on.
public struct Generation: Sendable, Equatable, Hashable {
    var space: UInt64
    var user: UInt64
}

final class ChangeLog: Sendable {
    private struct Counts {
        var space: UInt64 = 0
        /// By the user's bytes, as every map keyed by a user (`ExactString`).
        var users: [ExactString: UInt64] = [:]
    }

    private let counts = Mutex(Counts())

    func generation(of user: String) -> Generation {
        counts.withLock { Generation(space: $0.space, user: $0.users[ExactString(user)] ?? 0) }
    }

    func changed(_ users: some Sequence<String>) {
        counts.withLock { counts in
            for user in Set(users.map(ExactString.init)) { counts.users[user, default: 0] &+= 1 }
        }
    }

    func changedAll() {
        counts.withLock { $0.space &+= 1 }
    }
}

extension MemoryStore {
    /// When `user`'s memories last changed (see `Generation`).
    public func generation(of user: String) -> Generation { changes.generation(of: user) }

    /// No memory of the space expires before this time (unix ms; nil: none expires). A result
    /// read after `generation(of:)` and this stays what it is until then, unless the generation
    /// moves on: an expired memory leaves every read at once, before the purge deletes it.
    public var nextExpiry: Int64? { state.read { $0.nextExpiry } }

    /// Until when a read at `now` of what holds now stays what it is by the clock alone (unix
    /// ms; nil: for good): the next expiry, or `now` itself while some memory begins or ends
    /// later than `now` (a validity bound ahead; the store keeps the latest bound, not each
    /// one). A result read after `generation(of:)` and this may be kept until then.
    public func answersStay(at now: Int64) -> Int64? {
        state.read { state in
            if let bound = state.latestBound, bound > now { return now }
            return state.nextExpiry
        }
    }
}
