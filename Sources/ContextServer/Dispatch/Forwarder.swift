import ContextClient
import ContextProtocol
import NIOCore
import Synchronization

/// A cluster node's way to the ranges it does not serve: a request about their users goes, as
/// the line it came as (marked `forwarded_by` this node), to a node that serves them, and that
/// node's answer line comes back as it is. One hop: a node that is sent a request it cannot
/// serve answers `unavailable` rather than send it on (placements move; the client retries).
///
/// One pipelined connection per node and key: the request runs there under the key the client
/// authenticated with (every node reads the same keys file), so the key's users and role are
/// checked where the memories are, too.
final class Forwarder: Sendable {
    let node: String
    let maximumAnswerBytes: Int
    private let connections = Mutex<[String: ContextStoreClient]>([:])

    init(node: String, maximumAnswerBytes: Int) {
        self.node = node
        self.maximumAnswerBytes = maximumAnswerBytes
    }

    /// `request` (one JSON object) with `"forwarded_by":"<node>"` as its first field.
    func marked(_ request: ByteBuffer) -> [UInt8] {
        var bytes = Array(request.readableBytesView)
        guard let brace = bytes.firstIndex(of: UInt8(ascii: "{")) else { return bytes }
        var mark = JSONWriter()
        mark.key("forwarded_by")
        mark.string(node)
        let empty = bytes[(brace + 1)...].first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) } == UInt8(ascii: "}")
        if !empty { mark.raw(",") }
        bytes.insert(contentsOf: mark.bytes, at: brace + 1)
        return bytes
    }

    /// The answer line (with its newline) of the first of `addresses` that answers `line`.
    /// - Throws: `ProtocolError` `unavailable` when none does.
    func forward(_ line: [UInt8], to addresses: [String], secret: String?) async throws(ProtocolError) -> [UInt8] {
        var reasons: [String] = []
        for address in addresses {
            let key = address + "\u{0}" + (secret ?? "")
            do {
                let client = try await connection(to: address, key: key, secret: secret)
                do {
                    var answer = Array(try await client.exchange(line: line).readableBytesView)
                    answer.append(UInt8(ascii: "\n"))
                    return answer
                } catch {
                    // A connection closed by that node (a restart) is made again next time.
                    connections.withLock { if $0[key] === client { $0[key] = nil } }
                    await client.close()
                    throw error
                }
            } catch {
                reasons.append("\(address): \(error)")
            }
        }
        throw ProtocolError(
            .unavailable,
            reasons.isEmpty
                ? "no live node serves this user's range now; retry"
                : "no node that serves this user's range answered: \(reasons.joined(separator: "; "))")
    }

    private func connection(to address: String, key: String, secret: String?) async throws -> ContextStoreClient {
        if let client = connections.withLock({ $0[key] }) { return client }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw ProtocolError(.storageError, "a node's address '\(address)' is not host:port")
        }
        let client = try await ContextStoreClient.connect(
            host: String(address[..<colon]), port: port, maximumResponseBytes: maximumAnswerBytes,
            timeout: .seconds(30), secret: secret)
        let kept = connections.withLock { connections in
            if let other = connections[key] { return other }
            connections[key] = client
            return client
        }
        if kept !== client { await client.close() }
        return kept
    }

    /// Closes every connection.
    func close() async {
        let all = connections.withLock { connections in
            defer { connections = [:] }
            return Array(connections.values)
        }
        for client in all { await client.close() }
    }
}
