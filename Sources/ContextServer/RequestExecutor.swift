import ContextProtocol
import MemoryStore
import NIOCore
import VectorIndex

/// Turns request lines into response lines against one store. Stateless apart from the store, so
/// every event loop shares one.
struct RequestExecutor: Sendable {
    let store: MemoryStore
    let version: String

    /// A request line, decoded: the request to run, or the error line to send back.
    enum Decoded {
        case request(Request, rid: JSONValue?)
        case failure([UInt8])
    }

    /// Parses and validates one line. The `rid` of an object is echoed even when the rest of it
    /// is invalid.
    func decode(_ line: ByteBuffer) -> Decoded {
        let parsed: JSONValue
        do {
            parsed = try line.withUnsafeReadableBytes { bytes throws(JSONParseError) in try JSONParser.parse(bytes) }
        } catch {
            return .failure(Response.failure(rid: nil, ProtocolError(.invalidJSON, "invalid JSON: \(error)")))
        }
        guard case .object(let object) = parsed else {
            return .failure(
                Response.failure(rid: nil, ProtocolError(.notObject, "a request must be a JSON object, not \(parsed.typeName)")))
        }
        let rid = object["rid"]
        do {
            return .request(try Request(object), rid: rid)
        } catch {
            return .failure(Response.failure(rid: rid, error))
        }
    }

    /// Runs a request and encodes its response. Writes block on the database: run them off the
    /// event loops.
    func execute(_ request: Request, rid: JSONValue?) -> [UInt8] {
        do {
            return try run(request, rid: rid)
        } catch let error as StoreError {
            return Response.failure(rid: rid, ProtocolError(error))
        } catch let error as ProtocolError {
            return Response.failure(rid: rid, error)
        } catch {
            return Response.failure(rid: rid, ProtocolError(.storageError, "\(error)"))
        }
    }

    // One handler per op, named after it.
    private func run(_ request: Request, rid: JSONValue?) throws -> [UInt8] {
        switch request {
        case .ping:
            return Response.success(rid: rid) { writer in
                writer.field("pong")
                writer.bool(true)
            }
        case .hello:
            let stats = store.stats()
            let hello = ServerHello(
                server: "contextstore", version: version, protocolVersion: protocolVersion, dimension: stats.dimension,
                metric: stats.metric, index: "flat", blas: BLAS.loadedLibrary, memories: stats.memories)
            return Response.success(rid: rid) { hello.write(to: &$0) }
        case .add(let memory):
            let ids = try store.add([memory])
            return Response.success(rid: rid) { writer in
                writer.field("id")
                writer.string(ids[0])
            }
        case .addBatch(let batch):
            let ids = try store.add(batch)
            return Response.success(rid: rid) { writer in
                writer.field("count")
                writer.int(Int64(ids.count))
                writer.field("ids")
                writer.raw(UInt8(ascii: "["))
                for (i, id) in ids.enumerated() {
                    if i > 0 { writer.raw(UInt8(ascii: ",")) }
                    writer.string(id)
                }
                writer.raw(UInt8(ascii: "]"))
            }
        case .search(let search):
            let hits = try store.search(user: search.user, vector: search.vector, k: search.k, filter: search.filter)
            return Response.success(rid: rid) { writer in
                writer.field("hits")
                writer.raw(UInt8(ascii: "["))
                for (i, hit) in hits.enumerated() {
                    if i > 0 { writer.raw(UInt8(ascii: ",")) }
                    writer.memory(hit.memory, score: hit.score)
                }
                writer.raw(UInt8(ascii: "]"))
            }
        case .get(let id):
            guard let memory = store.get(id: id) else { throw ProtocolError(.notFound, "no memory with id '\(id)'") }
            return Response.success(rid: rid) { writer in
                writer.field("memory")
                writer.memory(memory)
            }
        case .delete(let id):
            guard try store.delete(id: id) else { throw ProtocolError(.notFound, "no memory with id '\(id)'") }
            return Response.success(rid: rid) { writer in
                writer.field("deleted")
                writer.int(1)
            }
        case .forget(let user):
            let count = try store.forget(user: user)
            return Response.success(rid: rid) { writer in
                writer.field("deleted")
                writer.int(Int64(count))
            }
        case .stats:
            let stats = store.stats()
            return Response.success(rid: rid) { stats.write(to: &$0) }
        }
    }
}
