import ContextClient
import ContextModel
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
    /// - Parameter writes: Whether the request writes: once it was sent to a node that then
    ///   gave no answer, it may have been stored there, so it is not sent to the next one (it
    ///   would be stored twice) and the error says its outcome is unknown.
    /// - Throws: `ProtocolError` `unavailable` when none answers.
    func forward(_ line: [UInt8], to addresses: [String], secret: String?, writes: Bool) async throws(ProtocolError)
        -> [UInt8]
    {
        var reasons: [String] = []
        for address in addresses {
            let key = address + "\u{0}" + (secret ?? "")
            let client: ContextStoreClient
            do {
                client = try await connection(to: address, key: key, secret: secret)
            } catch {
                reasons.append("\(address): \(error)")
                continue
            }
            do {
                var answer = Array(try await client.exchange(line: line).readableBytesView)
                answer.append(UInt8(ascii: "\n"))
                return answer
            } catch {
                // A connection closed by that node (a restart) is made again next time.
                connections.withLock { if $0[key] === client { $0[key] = nil } }
                await client.close()
                if writes {
                    throw ProtocolError(
                        .unavailable,
                        "node at \(address) took the write but gave no answer (\(error)): it may have been "
                            + "stored; send it again with its ids")
                }
                reasons.append("\(address): \(error)")
            }
        }
        throw ProtocolError(
            .unavailable,
            reasons.isEmpty
                ? "no live node serves this user's range now; retry"
                : "no node that serves this user's range answered: \(reasons.joined(separator: "; "))")
    }

    /// An `add_batch` whose users' ranges no one node serves: one batch per node, each with the
    /// items of the ranges it serves (`hosts(user)`: the addresses that serve that user's range,
    /// this node's own among them when it does), sent at once, and one answer made of theirs,
    /// in the batch's order. Each part is all-or-none in its ranges; when a part fails, the
    /// answer is its error and the other parts may be stored (an `add_batch` with ids can be
    /// sent again: `if_absent` skips what is there).
    func forward(
        batch request: ByteBuffer, rid: JSONValue?, hosts: (String) -> [String], secret: String?
    ) async throws(ProtocolError) -> [UInt8] {
        let object: JSONObject
        do {
            object =
                try request.withUnsafeReadableBytes { bytes throws(JSONParseError) in try JSONParser.parse(bytes) }
                .objectValue ?? JSONObject()
        } catch {
            throw ProtocolError(.invalidJSON, "invalid JSON: \(error)")
        }
        let arguments = try Operations.AddBatch.decode(object)
        guard case .array(let items) = object["items"] else { throw ProtocolError(.missingField, "missing 'items'") }
        // Items by the nodes that serve their ranges, in order.
        var parts: [(targets: [String], positions: [Int])] = []
        for (position, item) in arguments.items.enumerated() {
            let targets = hosts(item.user)
            guard !targets.isEmpty else {
                throw ProtocolError(.unavailable, "no live node serves user '\(item.user)' now; retry")
            }
            if let part = parts.firstIndex(where: { $0.targets.first == targets.first }) {
                parts[part].positions.append(position)
            } else {
                parts.append((targets, [position]))
            }
        }
        let lines = parts.map { part in
            var fields = object.fields.filter { $0.key != "items" && $0.key != "rid" }
            fields.append(("items", .array(part.positions.map { items[$0] })))
            var writer = JSONWriter()
            writer.value(.object(JSONObject(fields)))
            return marked(ByteBuffer(bytes: writer.bytes))
        }
        let sends = zip(lines, parts.map(\.targets)).map { ($0, $1) }
        let answers = await withTaskGroup(of: (Int, Result<[UInt8], ProtocolError>).self) { group in
            for (n, (line, targets)) in sends.enumerated() {
                group.addTask { (n, await self.result(of: line, to: targets, secret: secret)) }
            }
            var answers = [Result<[UInt8], ProtocolError>](repeating: .success([]), count: sends.count)
            for await (n, answer) in group { answers[n] = answer }
            return answers
        }
        // Each part's ids are its stored items' in order: an item is stored unless it is a
        // conflict, or skipped (it has an id, and the next id stored is another).
        var stored: [(position: Int, id: String)] = []
        var merged = Operations.AddBatch.Answer(ids: [], skipped: 0)
        var sequences: [String: Int64] = [:]
        for (part, answer) in zip(parts, answers) {
            let line = try answer.get()
            guard
                let object = try? JSONParser.parse(line.dropLast()).objectValue,
                object["ok"] == .bool(true)
            else {
                return line  // the part's error, as its node said it
            }
            let got = try Operations.AddBatch.decode(answer: object)
            var ids = got.ids[...]
            for (index, position) in part.positions.enumerated() {
                if got.conflicts.contains(index) {
                    merged.conflicts.append(position)
                } else if let given = arguments.items[position].id, ids.first != given {
                    merged.skipped += 1
                } else if let id = ids.popFirst() {
                    stored.append((position, id))
                }
            }
            merged.truncated += got.truncated.map {
                Truncation(index: part.positions[$0.index], tokens: $0.tokens, kept: $0.kept)
            }
            for (user, seq) in object["seqs"]?.objectValue?.fields ?? [] {
                if let seq = seq.integerValue { sequences[user] = max(sequences[user] ?? 0, seq) }
            }
        }
        merged.ids = stored.sorted { $0.position < $1.position }.map(\.id)
        merged.conflicts.sort()
        merged.truncated.sort { $0.index < $1.index }
        let receipt = WriteReceipt()
        receipt.record(sequences)
        return Response.success(rid: rid) { writer in
            Operations.AddBatch.encode(answer: merged, to: &writer)
            receipt.encode(to: &writer)
        }
    }

    /// A write forwarded to `targets`: its answer line, or why there is none.
    private func result(of line: [UInt8], to targets: [String], secret: String?) async -> Result<
        [UInt8], ProtocolError
    > {
        do throws(ProtocolError) {
            return .success(try await forward(line, to: targets, secret: secret, writes: true))
        } catch {
            return .failure(error)
        }
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
