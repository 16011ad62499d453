import ContextClient
import ContextModel
import Foundation
import Synchronization
import Testing

@testable import MemoryStore

/// `contextstore backup` against a running server that keeps writing.
@Suite struct BackupTests {
    @Test(arguments: ["flat", "hnsw"])
    func aBackupWhileWritesGoOnIsConsistentAndServesTheSameAnswers(index: String) async throws {
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        let server = try ServerProcess(
            database: database, arguments: ["--dim", "8", "--metric", "dot", "--index", index])
        let client = try await ContextStoreClient.connect(port: server.port)
        func batch(_ round: Int) -> [NewMemory] {
            (0..<50).map { i in
                let n = round * 50 + i
                // Distinct pseudo-random vectors.
                var state = UInt64(n) &* 0x9E37_79B9_7F4A_7C15 | 1
                let vector = (0..<8).map { _ in
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return Float(state >> 40) / Float(1 << 24) - 0.5
                }
                return NewMemory(id: "m\(n)", user: "u\(n % 3)", text: "memory \(n)", vector: vector)
            }
        }
        for round in 0..<10 { try await client.addBatch(batch(round)) }
        // Writes go on while the first backup runs.
        let writing = Task {
            for round in 10..<60 { try await client.addBatch(batch(round)) }
        }
        let during = try runContextstore(["backup", "--db", database, "--to", folder.path + "/during.db"])
        try await writing.value
        #expect(during.status == 0, "\(during.error)")
        #expect(during.output.hasSuffix("\nok\n"))
        let snapshot = try MemoryStore(path: folder.path + "/during.db")
        #expect(snapshot.count >= 500 && snapshot.count <= 3000)
        // A consistent prefix: every memory in the copy is the server's, field for field.
        for n in stride(from: 0, to: snapshot.count, by: 97) {
            let user = "u\(n % 3)"
            #expect(
                try await client.get(user: user, id: "m\(n)", withVector: true) == snapshot.get(user: user, id: "m\(n)")
            )
        }
        snapshot.close()

        // Once writes stop, a backup serves exactly the server's answers.
        let after = try runContextstore(["backup", "--db", database, "--to", folder.path + "/after.db"])
        #expect(after.status == 0, "\(after.output) \(after.error)")
        #expect(after.output.contains("3000 memories"))
        let copy = try ServerProcess(database: folder.path + "/after.db")
        let copyClient = try await ContextStoreClient.connect(port: copy.port)
        for q in 0..<20 {
            let search = SearchRequest(
                user: "u\(q % 3)", query: .vector((0..<8).map { Float(($0 * 3 + q) % 7) - 3 }), k: 10)
            #expect(try await copyClient.search(search) == client.search(search))
        }
        await copyClient.close()
        await client.close()
        copy.signal(SIGTERM)
        server.signal(SIGTERM)
    }

    @Test func aBackupNeverOverwrites() throws {
        let folder = TemporaryFolder()
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 2)
        try store.add([NewMemory(user: "u", text: "t", vector: [1, 0])])
        store.close()
        _ = FileManager.default.createFile(atPath: folder.path + "/taken.db", contents: Data("keep".utf8))
        let refused = try runContextstore([
            "backup", "--db", folder.path + "/space.db", "--to", folder.path + "/taken.db",
        ])
        #expect(refused.status == 1)
        #expect(
            refused.error
                == "error: cannot back up \(folder.path)/space.db: \(folder.path)/taken.db exists; a backup is written to a new file\n"
        )
        #expect(FileManager.default.contents(atPath: folder.path + "/taken.db") == Data("keep".utf8))
    }
}
