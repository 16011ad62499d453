import ContextClient
import ContextModel
import ContextProtocol
import MemoryStore

#if canImport(Glibc)
    import Glibc
#endif

/// What an import did.
public struct ImportSummary: Sendable, Equatable {
    public var imported = 0
    /// Rows already stored as they are (a rerun).
    public var skipped = 0
    /// Rows whose id their user has with other content: reported, not stored.
    public var conflicts = 0
    public var failed = 0
    public var seconds = 0.0
    /// How much of the source has been stored (or skipped, or refused), from 0 to 1: the share
    /// of the source the answered batches span (batches in flight together may be answered in
    /// any order), not the position of the last row read.
    public var fractionRead = 0.0
    /// Fields of the rows that the mapping put nowhere, with how many rows had each.
    public var unmapped: [String: Int] = [:]

    public var rate: Double { seconds > 0 ? Double(imported + skipped) / seconds : 0 }
}

/// Why an import cannot run at all.
public struct ImportError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
}

/// A row that could not be imported.
public struct ImportFailure: Sendable, Equatable {
    public var line: Int
    public var reason: String
}

/// Reads rows from a source and stores them in batches, several in flight, reporting bad rows
/// without stopping (unless strict).
public struct Importer: Sendable {
    public var batchSize: Int
    /// Batches sent before the first answer is awaited.
    public var inFlight: Int
    /// Stop at the first bad row.
    public var strict: Bool

    public init(batchSize: Int = 1000, inFlight: Int = 4, strict: Bool = false) {
        self.batchSize = max(1, batchSize)
        self.inFlight = max(1, inFlight)
        self.strict = strict
    }

    /// Runs the import.
    /// - Parameters:
    ///   - onFailure: Called for each bad row, in no particular order.
    ///   - onProgress: Called after each batch with the running totals.
    public func run(
        _ source: ImportSource, into sink: some ImportSink,
        onFailure: @escaping @Sendable (ImportFailure) -> Void,
        onProgress: @escaping @Sendable (ImportSummary) -> Void = { _ in }
    ) async throws -> ImportSummary {
        let start = Clock.monotonicSeconds()
        let dimension = try await sink.dimension()
        var summary = ImportSummary()
        var batch: [(line: Int, memory: NewMemory)] = []
        var stop = false

        func check(_ row: ImportRow) -> NewMemory? {
            switch row.memory {
            case .failure(let error):
                fail(ImportFailure(line: row.line, reason: error.reason))
                return nil
            case .success(let memory):
                if let dimension, let vector = memory.vector, vector.count != dimension {
                    fail(
                        ImportFailure(
                            line: row.line,
                            reason: "wrong_dimension: \(vector.count) components, the space has \(dimension)"))
                    return nil
                }
                return memory
            }
        }
        func fail(_ failure: ImportFailure) {
            summary.failed += 1
            onFailure(failure)
            if strict { stop = true }
        }

        try await withThrowingTaskGroup(of: BatchOutcome.self) { group in
            var running = 0
            func absorb(_ outcome: BatchOutcome) {
                summary.fractionRead = min(1, summary.fractionRead + outcome.span)
                summary.imported += outcome.stored
                summary.skipped += outcome.skipped
                summary.conflicts += outcome.conflicts.count
                for failure in outcome.failures { fail(failure) }
                for conflict in outcome.conflicts {
                    onFailure(conflict)
                    if strict { stop = true }
                }
                summary.seconds = Clock.monotonicSeconds() - start
                onProgress(summary)
            }
            // Where the last batch launched ends in the source: a batch spans from there to its own
            // end (rows refused before any batch included).
            var launchedTo = 0.0
            func launch(_ rows: [(line: Int, memory: NewMemory)], fraction: Double) async throws {
                if running >= inFlight, let outcome = try await group.next() {
                    running -= 1
                    absorb(outcome)
                }
                running += 1
                let span = fraction - launchedTo
                launchedTo = fraction
                group.addTask {
                    var outcome = await Self.store(rows, into: sink)
                    outcome.span = span
                    return outcome
                }
            }
            var first = true
            while !stop, let row = source.nextRow() {
                // Not one failure per row for what every row lacks.
                if first, !source.hasDefaultUser, case .failure(let error) = row.memory,
                    error.reason == "missing_field: missing field 'user'"
                {
                    throw ImportError(
                        description:
                            "line \(row.line) names no user: give every row a '\(source.mapping.user)' field, name the field that holds the user with --user-field, or pass --user for the rows that have none"
                    )
                }
                first = false
                for field in row.unmapped { summary.unmapped[field, default: 0] += 1 }
                guard let memory = check(row) else { continue }
                batch.append((row.line, memory))
                if batch.count >= batchSize {
                    try await launch(batch, fraction: row.fraction)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            if !stop, !batch.isEmpty { try await launch(batch, fraction: source.fractionRead) }
            while let outcome = try await group.next() { absorb(outcome) }
        }
        summary.seconds = Clock.monotonicSeconds() - start
        summary.fractionRead = source.fractionRead
        return summary
    }

    struct BatchOutcome: Sendable {
        var stored = 0
        var skipped = 0
        var failures: [ImportFailure] = []
        var conflicts: [ImportFailure] = []
        /// The share of the source from the end of the batch before it to the end of its last row.
        var span = 0.0
    }

    /// How long a batch the server answers `rate_limited` or `busy` is tried again, at most.
    static let retryingFor = 300.0

    /// Stores a batch; when the server is over a rate or busy, tries it again after the wait
    /// it names (or a doubling backoff); when the batch is refused, stores its rows one by one
    /// to find the bad ones.
    static func store(_ rows: [(line: Int, memory: NewMemory)], into sink: some ImportSink) async -> BatchOutcome {
        var outcome = BatchOutcome()
        let started = Clock.monotonicSeconds()
        var backoff = 0.05
        while true {
            do {
                let stored = try await sink.store(rows.map(\.memory))
                outcome.stored = stored.stored
                outcome.skipped = stored.skipped
                outcome.conflicts = stored.conflicts.map { index in
                    let memory = rows[index].memory
                    return ImportFailure(
                        line: rows[index].line,
                        reason:
                            "conflict: user '\(memory.user)' has a memory '\(memory.id ?? "")' with other content; not stored"
                    )
                }
                return outcome
            } catch ClientError.server(let code, _, let details)
                where (code == ErrorCode.rateLimited.rawValue || code == ErrorCode.busy.rawValue)
                && Clock.monotonicSeconds() - started < retryingFor
            {
                let wait = max(backoff, Double(details["retry_after_ms"] ?? 0) / 1000)
                backoff = min(backoff * 2, 2)
                try? await Task.sleep(for: .seconds(wait))
            } catch {
                guard rows.count > 1 else {
                    outcome.failures.append(ImportFailure(line: rows[0].line, reason: describe(error)))
                    return outcome
                }
                break
            }
        }
        for row in rows {
            let single = await store([row], into: sink)
            outcome.stored += single.stored
            outcome.skipped += single.skipped
            outcome.failures += single.failures
            outcome.conflicts += single.conflicts
        }
        return outcome
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case let error as ClientError: error.description
        case let error as StoreError: "\(error.code.rawValue): \(error.message)"
        default: "\(error)"
        }
    }
}
