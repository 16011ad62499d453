import ContextModel
import Dispatch
import VectorIndex

/// Vectors of a compact flat index (`flatStorage` float16 or int8): the index keeps codes only,
/// so a memory's float32 vector is read from the file, where every memory's vector is stored as
/// it was prepared at insert (`embedding`). Searches rescore the candidates the codes choose
/// with these vectors; `get`, the prompt's vectors and an idempotent add's comparison read them
/// too. With float32 storage everything here answers from the flat index, as before.
extension MemoryStore {
    /// The exact scores, "higher is closer" (`FlatIndex.exactScores`), of the memories at
    /// `handles` for `query`; `-infinity` for a handle without a memory (or one gone from the
    /// file since the caller read `state`).
    /// - Parameter database: The connection to read on (the writer's, inside a write); nil
    ///   takes one of `vectorReaders`.
    func exactScores(
        _ state: borrowing State, handles: [Int32], query: [Float], on database: Database? = nil
    ) throws -> [Float] {
        guard let flat = state.flat else { return handles.map { _ in -Float.infinity } }
        return try exactScores(flat, state.records, handles: handles, query: query, on: database)
    }

    /// `exactScores(_:handles:query:on:)` from the parts of a state it reads (copies share their
    /// storage), for a closure that may not capture the borrowed state.
    func exactScores(
        _ flat: FlatIndex, _ records: [Record?], handles: [Int32], query: [Float], on database: Database? = nil
    ) throws -> [Float] {
        if flat.keepsVectors { return flat.exactScores(handles: handles, query: query) }
        let seqs = handles.map { handle in
            handle >= 0 && Int(handle) < records.count ? records[Int(handle)]?.seq : nil
        }
        return try storedVectors(seqs: seqs, on: database).map { vector in
            guard let vector, vector.count == query.count else { return -Float.infinity }
            return flat.exactScore(of: vector, query: query)
        }
    }

    /// The vectors of `user`'s memories `keys` (see `key(user:id:)`), nil where there is none.
    func vectors(_ state: borrowing State, keys: [String], on database: Database? = nil) throws -> [[Float]?] {
        guard let flat = state.flat else { return keys.map { _ in nil } }
        if flat.keepsVectors { return keys.map { flat.vector(id: $0) } }
        return try storedVectors(seqs: keys.map { state.record(key: $0)?.seq }, on: database)
    }

    /// The vectors stored in the file for memory rows `seqs`, in order, in one read transaction;
    /// nil for a nil seq or a row that is gone.
    /// - Throws: `StoreError.tooCostly` once the reads have run past `statementTimeLimit` (an
    ///   `exact` search of a large user reads every row; SQLite's own limit, counted within one
    ///   statement, never sees a point read run long).
    func storedVectors(seqs: [Int64?], on database: Database?) throws -> [[Float]?] {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, statementTimeLimit)) * 1_000_000
        func read(_ database: Database) throws -> [[Float]?] {
            let statement = try database.cachedStatement(SQL.embeddingOfRow)
            defer { statement.reset() }
            return try seqs.enumerated().map { i, seq in
                if i % 256 == 255, DispatchTime.now().uptimeNanoseconds > deadline {
                    throw StoreError.tooCostly(
                        "reading \(seqs.count) vectors from the file ran past \(statementTimeLimit) ms and was stopped")
                }
                guard let seq else { return nil }
                statement.reset()
                try statement.bind(seq, at: 1)
                return try statement.step() ? statement.floats(at: 0) : nil
            }
        }
        do {
            if let database { return try read(database) }
            if !seqs.contains(where: { $0 != nil }) { return seqs.map { _ in nil } }
            return try vectorReaders.with(path: path) { database in try database.readTransaction { try read(database) }
            }
        } catch let error as SQLiteError {
            throw StoreError.sqlite(error.description)
        }
    }
}
