extension MemoryStore {
    /// One bounded step of merging the keyword index's segments (see `KeywordIndex.merge`): at
    /// most about `KeywordIndex.mergePages` pages written, in a transaction of its own on the
    /// writing connection, so a write waits behind one step at most. It changes no memory and no
    /// command index: every replica of a space may merge on its own.
    /// - Returns: Whether it merged anything; false when each level of the index holds at most
    ///   one segment, or while writes are refused.
    /// - Throws: `StoreError.sqlite`, `.closed`.
    @discardableResult
    public func mergeKeywordSegments() throws -> Bool {
        // While writes are refused (see `withWriter`), so is this: nothing to report each time.
        guard writeSide.withLock({ $0.refusal == nil }) else { return false }
        return try withWriter { statements, _ in
            let database = statements.database
            let before = database.totalChanges
            try database.cachedStatement(KeywordIndex.merge).execute([Int64(KeywordIndex.mergePages)])
            return database.totalChanges - before >= 2
        }
    }

    /// Merges the keyword index's segments until each level holds at most one (after a bulk
    /// import, for instance); returns the steps taken.
    @discardableResult
    public func mergeKeywordSegmentsFully() throws -> Int {
        var steps = 0
        while try mergeKeywordSegments() { steps += 1 }
        return steps
    }
}
