import ContextProtocol
import Embedder
import MemoryStore
import NIOCore
import VectorIndex

/// Turns request lines into response lines against one store. Stateless apart from the store, so
/// every event loop shares one.
struct RequestExecutor: Sendable {
    let store: MemoryStore
    let embedder: SentenceEmbedder?
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
                Response.failure(
                    rid: nil, ProtocolError(.notObject, "a request must be a JSON object, not \(parsed.typeName)")))
        }
        let rid = object["rid"]
        if let rid, !rid.isFinite {
            return .failure(
                Response.failure(
                    rid: nil, ProtocolError(.nonFinite, "'rid' holds NaN or Infinity, which JSON cannot carry back")))
        }
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
            return try run(try embed(request), rid: rid)
        } catch let error as StoreError {
            return Response.failure(rid: rid, ProtocolError(error))
        } catch let error as ProtocolError {
            return Response.failure(rid: rid, error)
        } catch {
            return Response.failure(rid: rid, ProtocolError(.storageError, "\(error)"))
        }
    }

    /// Computes what the request leaves to the embedding model (the vectors of memories given as
    /// text only, the vector of a search by `query`) and checks the request's `model` against the
    /// space's. CPU-heavy when there is text to embed: run it off the event loops.
    func embed(_ request: Request) throws(ProtocolError) -> Request {
        switch request {
        case .add(var memory, let model):
            try check(model: model)
            if memory.vector.isEmpty { memory.vector = try requireEmbedder().embed([memory.text])[0] }
            return .add(memory, model: model)
        case .addBatch(var batch, let model, let ifAbsent):
            try check(model: model)
            let missing = batch.indices.filter { batch[$0].vector.isEmpty }
            if !missing.isEmpty {
                let vectors = try requireEmbedder().embed(missing.map { batch[$0].text })
                for (index, vector) in zip(missing, vectors) { batch[index].vector = vector }
            }
            return .addBatch(batch, model: model, ifAbsent: ifAbsent)
        case .search(var search) where search.vector.isEmpty:
            search.vector = try requireEmbedder().embed([search.query ?? ""])[0]
            return .search(search)
        default:
            return request
        }
    }

    private func requireEmbedder() throws(ProtocolError) -> SentenceEmbedder {
        guard let embedder else {
            throw ProtocolError(.noEmbedder, "this server runs without an embedding model; send vectors")
        }
        return embedder
    }

    /// A request that names the model of its vectors must name the space's (or the server's).
    private func check(model: String?) throws(ProtocolError) {
        guard let model, let expected = store.model ?? embedder?.modelID, model != expected else { return }
        throw ProtocolError(.modelMismatch, "this space holds vectors of the model \(expected), not \(model)")
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
                metric: stats.metric, index: stats.index, blas: BLAS.loadedLibrary, memories: stats.memories,
                embedder: embedder?.modelID)
            return Response.success(rid: rid) { hello.write(to: &$0) }
        case .add(let memory, _):
            let ids = try store.add([memory])
            return Response.success(rid: rid) { writer in
                writer.field("id")
                writer.string(ids[0])
            }
        case .addBatch(let batch, _, let ifAbsent):
            let ids = try store.add(batch, skippingExisting: ifAbsent)
            return Response.success(rid: rid) { writer in
                writer.field("count")
                writer.int(Int64(ids.count))
                writer.field("skipped")
                writer.int(Int64(batch.count - ids.count))
                writer.field("ids")
                writer.array(count: ids.count) { $0.string(ids[$1]) }
            }
        case .search(let search):
            let hits = try store.search(
                user: search.user, vector: search.vector, k: search.k, filter: search.filter, ef: search.ef,
                exact: search.exact)
            return Response.success(rid: rid) { writer in
                writer.field("hits")
                writer.array(count: hits.count) { $0.memory(hits[$1].memory, score: hits[$1].score) }
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
            let cache = embedder?.cacheStatistics
            return Response.success(rid: rid) { writer in
                stats.write(to: &writer)
                writer.field("embedding_cache_hits")
                writer.int(Int64(cache?.hits ?? 0))
                writer.field("embedding_cache_misses")
                writer.int(Int64(cache?.misses ?? 0))
                writer.field("embedding_cache_entries")
                writer.int(Int64(cache?.entries ?? 0))
                writer.field("embedding_cache_bytes")
                writer.int(Int64(cache?.bytes ?? 0))
            }
        case .embed(let texts):
            let vectors = try requireEmbedder().embed(texts)
            return Response.success(rid: rid) { writer in
                writer.field("model")
                writer.string(embedder?.modelID ?? "")
                writer.field("vectors")
                writer.array(count: vectors.count) { $0.vector(vectors[$1]) }
            }
        }
    }
}
