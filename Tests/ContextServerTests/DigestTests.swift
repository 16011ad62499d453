import ContextClient
import ContextModel
import ContextProtocol
import Testing

@testable import ContextServer

/// `digest` over the wire: two servers given the same writes answer the same, and a key reads
/// only its own users' digests.
@Suite struct DigestTests {
    @Test func theSameWritesGiveTheSameDigest() async throws {
        var digests: [Operations.Digest.Answer] = []
        for _ in 0..<2 {
            let server = try await TestServer(dimension: 2)
            let client = try await server.client()
            // Explicit ids and times: nothing left for either server to draw.
            try await client.add(NewMemory(id: "a", user: "u", text: "tea", createdAt: 1_000, vector: [1, 0]))
            try await client.add(NewMemory(id: "b", user: "u", text: "coffee", createdAt: 2_000, vector: [0, 1]))
            try await client.add(NewMemory(id: "c", user: "v", text: "juice", createdAt: 3_000, vector: [1, 1]))
            _ = try await client.update(user: "u", id: "a", MemoryChanges(session: .some("s")))
            try await client.delete(user: "v", id: "c")
            digests.append(try await client.digest())
            #expect(try await client.digest(user: "u") != client.digest(user: "v"))
            // A user's digest tells nothing of the space's other writes.
            #expect(try await client.digest(user: "u").appliedIndex == nil)
            await client.close()
            await server.stop()
        }
        #expect(digests[0] == digests[1])
        #expect(digests[0].appliedIndex == 5 && digests[0].digest.count == 64)
    }

    @Test func aKeyReadsItsOwnUsersDigestsAlone() async throws {
        let server = try await TestServer(dimension: 2) { $0.keys = KeyRing(KeysTests.keys) }
        let root = try await ContextStoreClient.connect(port: server.port, secret: "root-secret-0123456789")
        let reader = try await ContextStoreClient.connect(port: server.port, secret: "reader-secret-0123456789")
        try await root.add(NewMemory(id: "a", user: "alice", text: "tea", vector: [1, 0]))
        #expect(try await reader.digest(user: "alice") == root.digest(user: "alice"))
        await #expect(
            throws: ClientError.server(
                code: "forbidden", message: "the digest of the whole space needs an admin's key; name a user")
        ) { try await reader.digest() }
        await #expect { try await reader.digest(user: "bob") } throws: {
            guard case .server(let code, _, _) = $0 as? ClientError else { return false }
            return code == "forbidden"
        }
        for client in [root, reader] { await client.close() }
        await server.stop()
    }
}
