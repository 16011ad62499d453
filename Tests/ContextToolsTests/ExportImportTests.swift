import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Embedder
import Foundation
import Logging
import MemoryStore
import Testing

@testable import ContextTools

/// `export` then `import` into an empty server: every user's rows come back the same, as their
/// digests say, with vectors in the file or embedded again by the same model.
@Suite struct ExportImportTests {
    /// A server on a new file in `folder`, and a client of it.
    func serve(
        _ folder: Folder, _ name: String, dimension: Int?, embedder: SentenceEmbedder? = nil
    ) async throws -> (MemoryStore, ContextStoreServer, ContextStoreClient) {
        let store = try MemoryStore(
            path: folder.path + "/\(name).db", dimension: dimension ?? embedder?.dimension, metric: .cosine,
            model: embedder?.modelID)
        let server = try await ContextStoreServer(
            store: store, embedder: embedder, configuration: ServerConfiguration(port: 0, threads: 2),
            logger: Logger(label: "test"))
        return (store, server, try await ContextStoreClient.connect(port: server.port))
    }

    func send(_ client: ContextStoreClient, _ lines: [String]) async throws {
        for line in lines {
            let answer = try await client.roundTrip(line: Array(line.utf8))
            #expect(answer["ok"] == true, "\(line) -> \(answer)")
        }
    }

    func digests(_ client: ContextStoreClient, _ users: [String]) async throws -> [String?] {
        var digests: [String?] = []
        for user in users {
            digests.append(try await client.roundTrip(line: Operations.Digest.requestLine(user))["digest"]?.stringValue)
        }
        return digests
    }

    /// Exports every user's memories from `source` into a file, imports it into `target`.
    func copy(
        from source: ContextStoreClient, to target: ContextStoreClient, withVector: Bool, folder: Folder
    ) async throws -> (exported: Int, summary: ImportSummary, failures: [ImportFailure]) {
        let path = folder.path + "/export-\(withVector).jsonl"
        var file: [UInt8] = []
        // Pages of two: the positions carry the export across pages.
        let exported = try await Exporter(withVector: withVector, pageSize: 2).run(source) { file += $0 }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(file)))
        let failures = Failures()
        let summary = try await Importer().run(
            ImportSource(path: path, format: .jsonl, defaultUser: nil), into: ServerSink(client: target),
            onFailure: failures.record)
        return (exported, summary, failures.all)
    }

    @Test func everyFieldComesBackWithItsVector() async throws {
        let folder = Folder()
        let (sourceStore, sourceServer, source) = try await serve(folder, "source", dimension: 3)
        let t = 1_683_504_000_000
        try await send(
            source,
            [
                #"{"op":"add","user":"ana","id":"lisbon","session":"s\u0000","role":"user","speaker":"Ana","text":"Ana vive em Lisboa \u0000 ☕","vector":[3,0,4],"created_at":\#(t),"metadata":{"n":9007199254740993,"f":0.1,"nested":{"a":[1,"x",null,true]}}}"#,
                #"{"op":"add","user":"ana","id":"porto","text":"Ana moved to Porto","vector":[1,2,2],"created_at":\#(t + 1000),"supersedes":"lisbon","sources":["lisbon","doc:1\u0000p2"]}"#,
                #"{"op":"add","user":"ana","id":"gone","text":"a slip","vector":[1,0,0]}"#,
                #"{"op":"delete","user":"ana","id":"gone"}"#,
                #"{"op":"add","user":"ana","id":"braga","text":"Ana will move to Braga","vector":[0,1,0],"created_at":\#(t + 2000),"valid_from":\#(t + 5000),"supersedes":"porto"}"#,
                #"{"op":"add","user":"bob","text":"Bob's tea","role":"assistant","vector":[0.6,0.8,0]}"#,
                #"{"op":"add","user":"ana","id":"code","text":"door code 4512","vector":[1,1,1],"ttl":86400}"#,
                #"{"op":"add","user":"ana","text":"no id, no time","vector":[0.1,0.2,0.3]}"#,
                // What users said of a memory is part of it: restored, not counted again.
                #"{"op":"feedback","user":"ana","id":"braga","helped":true}"#,
                #"{"op":"feedback","user":"ana","id":"braga","helped":true}"#,
                #"{"op":"feedback","user":"ana","id":"braga","helped":false}"#,
            ])
        let before = try await digests(source, ["ana", "bob"])
        let (targetStore, targetServer, target) = try await serve(folder, "target", dimension: 3)
        let (exported, summary, failures) = try await copy(from: source, to: target, withVector: true, folder: folder)
        #expect(exported == 6 && summary.imported == 6 && failures.isEmpty, "\(failures)")
        #expect(summary.unmapped.isEmpty, "\(summary.unmapped)")
        #expect(try await digests(target, ["ana", "bob"]) == before)
        // The restored counts are the ones the next feedback adds to.
        let counted = try await target.roundTrip(
            line: Array(#"{"op":"feedback","user":"ana","id":"braga","helped":true}"#.utf8))
        #expect(counted["helped"] == 3 && counted["not_helped"] == 1, "\(counted)")
        await target.close()
        await targetServer.shutdown()
        targetStore.close()
        // A vector-only space cannot embed a file without vectors: each row says so.
        let (noneStore, noneServer, none) = try await serve(folder, "target-none", dimension: 3)
        let refused = try await copy(from: source, to: none, withVector: false, folder: folder)
        #expect(refused.summary.imported == 0 && refused.failures.count == 6)
        await none.close()
        await noneServer.shutdown()
        noneStore.close()
        await source.close()
        await sourceServer.shutdown()
        sourceStore.close()
    }

    /// Without vectors in the file, the model embeds the text again, windows of a long text
    /// included, to the same bits.
    @Test func withoutVectorsTheModelEmbedsTheSameRows() async throws {
        let embedder = try #require(try? SentenceEmbedder(folder: modelFolder), "run scripts/fetch-model")
        let folder = Folder()
        let (sourceStore, sourceServer, source) = try await serve(folder, "source", dimension: nil, embedder: embedder)
        let long = (1...120).map { "Turn \($0) of a long story about a lighthouse keeper and the sea." }.joined(
            separator: " ")
        try await send(
            source,
            [
                #"{"op":"add","user":"ana","id":"a","text":"Ana lives in Lisbon","created_at":1683504000000}"#,
                #"{"op":"add","user":"ana","id":"b","text":"Ana moved to Porto","created_at":1683504001000,"supersedes":"a"}"#,
                #"{"op":"add","user":"ana","id":"long","text":"\#(long)"}"#,
            ])
        #expect(sourceStore.stats().memories == 3)
        let before = try await digests(source, ["ana"])
        let (targetStore, targetServer, target) = try await serve(folder, "target", dimension: nil, embedder: embedder)
        let (exported, summary, failures) = try await copy(from: source, to: target, withVector: false, folder: folder)
        #expect(exported == 3 && summary.imported == 3 && failures.isEmpty, "\(failures)")
        #expect(try await digests(target, ["ana"]) == before)
        for (client, server, store) in [(target, targetServer, targetStore), (source, sourceServer, sourceStore)] {
            await client.close()
            await server.shutdown()
            store.close()
        }
    }
}
