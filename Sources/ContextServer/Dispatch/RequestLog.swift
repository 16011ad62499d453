import ContextModel
import ContextProtocol
import Foundation
import Logging
import NIOCore
import Synchronization

/// Logs each request that ran, with its op, `rid`, key name (never a secret), time and outcome:
/// a warning when it took longer than the slow threshold (and kept in `slow` for the
/// `slow_requests` op), an error when the database failed, a debug line otherwise (built only
/// when the logger's level lets it through).
struct RequestLog: Sendable {
    let slow: SlowRequestLog
    let logger: Logger

    func note(_ op: String, rid: JSONValue?, key: String?, took: TimeAmount, outcome: String, door: FrontDoor) {
        func metadata() -> Logger.Metadata {
            [
                "op": "\(op)", "rid": "\(rid.map { JSONWriter.serialize($0) } ?? "-")", "key": "\(key ?? "-")",
                "ms": "\(Double(took.nanoseconds / 1000) / 1000)", "answer": "\(outcome == "ok" ? "ok" : "error")",
                "outcome": "\(outcome)",
            ]
        }
        if let threshold = slow.threshold, took >= threshold {
            logger.warning("slow request", metadata: metadata())
            slow.keep(
                SlowRequest(
                    at: Int64(Date().timeIntervalSince1970 * 1000), op: op, key: key,
                    milliseconds: Double(took.nanoseconds / 1000) / 1000, outcome: outcome, door: door.rawValue))
        } else if outcome == ErrorCode.storageError.rawValue {
            logger.error("request failed", metadata: metadata())
        } else {
            logger.debug("request", metadata: metadata())
        }
    }
}

/// The latest slow requests, at most `Operations.SlowRequests.kept` (the oldest go first).
final class SlowRequestLog: Sendable {
    /// Requests that take this long or longer are slow; nil: none are kept or logged as slow.
    let threshold: TimeAmount?
    private let ring = Mutex<(requests: [SlowRequest], next: Int)>(([], 0))

    init(threshold: TimeAmount?) {
        self.threshold = threshold
    }

    func keep(_ request: SlowRequest) {
        ring.withLock { ring in
            if ring.requests.count < Operations.SlowRequests.kept {
                ring.requests.append(request)
            } else {
                ring.requests[ring.next] = request
            }
            ring.next = (ring.next + 1) % Operations.SlowRequests.kept
        }
    }

    /// The latest `limit`, newest first.
    func latest(_ limit: Int) -> Operations.SlowRequests.Answer {
        let requests = ring.withLock { ring in
            // Oldest first: from `next` on (when the ring is full), then from the start.
            Array(ring.requests[ring.next...]) + ring.requests[..<ring.next]
        }
        return Operations.SlowRequests.Answer(
            thresholdMilliseconds: threshold.map { $0.nanoseconds / 1_000_000 },
            requests: Array(requests.reversed().prefix(limit)))
    }
}
