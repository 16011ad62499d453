import ContextClient
import ContextModel
import ContextProtocol
import MemoryStore
import Testing
import VectorIndex

@Suite struct EndToEndTests {
    @Test func everyOperationThroughTheClient() async throws {
        let server = try await TestServer(metric: .dot)
        let client = try await server.client()
        try await client.ping()

        var hello = try await client.hello()
        #expect(hello.server == "contextstore")
        #expect(hello.protocolVersion == 1)
        #expect(hello.dimension == nil)
        #expect(hello.metric == .dot)
        #expect(hello.index == "flat")
        #expect(hello.blas.contains("libblas.so"))
        #expect(hello.kernels == Processor.kernels)
        #expect(hello.kernels.hasPrefix("avx2+fma+f16c, int8 ") || hello.kernels == "baseline, int8 baseline")
        #expect(hello.cpu == Processor.model && !hello.cpu.isEmpty)

        let first = try await client.add(
            NewMemory(
                user: "alice", session: "s1", role: .user, text: "I like tea", createdAt: 1000,
                metadata: #"{"lang":"en"}"#, vector: [1, 0, 0]))
        let ids = try await client.addBatch([
            NewMemory(
                id: "b", user: "alice", session: "s2", role: .assistant, text: "Noted: tea", createdAt: 2000,
                vector: [0.5, 0.5, 0]),
            NewMemory(id: "c", user: "bob", text: "I like coffee", createdAt: 3000, vector: [1, 0, 0]),
        ])
        #expect(ids == ["b", "c"])
        hello = try await client.hello()
        #expect(hello.dimension == 3)
        #expect(hello.memories == 3)

        let hits = try await client.search(SearchRequest(user: "alice", query: .vector([1, 0, 0]), k: 10))
        #expect(hits.map(\.memory.id) == [first, "b"])
        #expect(hits.map(\.score) == [1, 0.5])
        #expect(
            hits[0].memory
                == Memory(
                    id: first, user: "alice", session: "s1", role: .user, text: "I like tea", createdAt: 1000,
                    metadata: #"{"lang":"en"}"#, vector: []))
        let filtered = try await client.search(
            SearchRequest(user: "alice", query: .vector([1, 0, 0]), k: 10, filter: RowFilter(session: "s2")))
        #expect(filtered.map(\.memory.id) == ["b"])
        let ranged = try await client.search(
            SearchRequest(user: "alice", query: .vector([1, 0, 0]), k: 10, filter: RowFilter(since: 500, until: 1500)))
        #expect(ranged.map(\.memory.id) == [first])
        let byRole = try await client.search(
            SearchRequest(user: "alice", query: .vector([1, 0, 0]), k: 10, filter: RowFilter(role: .assistant)))
        #expect(byRole.map(\.memory.id) == ["b"])

        let fetched = try await client.get(user: "bob", id: "c", withVector: true)
        #expect(fetched == Memory(id: "c", user: "bob", text: "I like coffee", createdAt: 3000, vector: [1, 0, 0]))

        try await client.delete(user: "alice", id: "b")
        await #expect(throws: ClientError.server(code: "not_found", message: "user 'alice' has no memory with id 'b'"))
        {
            try await client.delete(user: "alice", id: "b")
        }
        #expect(try await client.forget(user: "alice") == 1)
        #expect(try await client.forget(user: "alice") == 0)

        let stats = try await client.stats()
        #expect(stats.store.memories == 1)
        #expect(stats.store.users == 1)
        #expect(stats.store.dimension == 3)
        #expect(stats.store.bytesOnDisk > 0)
        #expect(stats.store.bytesInMemory > 0)

        await client.close()
        await server.stop()
    }

    @Test func echoesAnyRid() async throws {
        let server = try await TestServer()
        let socket = try RawSocket(port: server.port)
        socket.send(
            #"{"op":"ping","rid":"a"}"# + "\n" + #"{"op":"ping","rid":{"n":[1,2]}}"# + "\r\n"
                + #"{"rid":3,"op":"nope"}"# + "\n")
        #expect(socket.readLine() == #"{"ok":true,"rid":"a","pong":true}"#)
        #expect(socket.readLine() == #"{"ok":true,"rid":{"n":[1,2]},"pong":true}"#)
        #expect(
            socket.readLine() == #"{"ok":false,"rid":3,"error":{"code":"unknown_op","message":"unknown op 'nope'"}}"#)
        await server.stop()
    }

    @Test func pipelinedResponsesComeBackInOrder() async throws {
        let server = try await TestServer(dimension: 2)
        let socket = try RawSocket(port: server.port)
        // Reads and writes interleaved: writes take the writer thread, reads stay on the event
        // loop, and the answers must still come back in request order.
        var requests = ""
        for i in 0..<600 {
            switch i % 3 {
            case 0:
                requests += #"{"op":"add","rid":\#(i),"id":"m\#(i)","user":"u","text":"t","vector":[1,\#(i)]}"# + "\n"
            case 1: requests += #"{"op":"get","rid":\#(i),"user":"u","id":"m\#(i - 1)"}"# + "\n"
            default: requests += #"{"op":"ping","rid":\#(i)}"# + "\n"
            }
        }
        socket.send(requests)
        for i in 0..<600 {
            let line = try #require(socket.readLine())
            #expect(line.hasPrefix(#"{"ok":true,"rid":\#(i),"#), "response \(i): \(line)")
        }
        #expect(server.store.count == 200)
        await server.stop()
    }

    @Test func concurrentClientsAddAndSearch() async throws {
        let server = try await TestServer(dimension: 4, metric: .dot)
        let clients = 8
        let perClient = 60
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                group.addTask {
                    let client = try await server.client()
                    for i in 0..<perClient {
                        let vector: [Float] = [Float(c), Float(i), 1, 0]
                        if i % 10 == 0 {
                            // Batches from several clients interleave with single adds.
                            try await client.addBatch([
                                NewMemory(id: "c\(c)-\(i)", user: "user\(c)", text: "t", vector: vector),
                                NewMemory(id: "c\(c)-\(i)b", user: "user\(c)", text: "t", vector: vector),
                            ])
                        } else {
                            try await client.add(
                                NewMemory(id: "c\(c)-\(i)", user: "user\(c)", text: "t", vector: vector))
                        }
                        let hits = try await client.search(
                            SearchRequest(user: "user\(c)", query: .vector([0, 1, 0, 0]), k: 1))
                        // Only this client writes to this user, so its latest memory is the best match.
                        #expect(hits.first?.memory.id == "c\(c)-\(i)")
                    }
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        let client = try await server.client()
        let stats = try await client.stats()
        #expect(stats.store.memories == clients * (perClient + perClient / 10))
        #expect(stats.store.users == clients)
        for c in 0..<clients {
            let hits = try await client.search(SearchRequest(user: "user\(c)", query: .vector([0, 0, 1, 0]), k: 1000))
            #expect(hits.count == perClient + perClient / 10)
        }
        await client.close()
        await server.stop()
    }

    @Test func shutdownAnswersEverythingAlreadyReceived() async throws {
        let server = try await TestServer(dimension: 2)
        let socket = try RawSocket(port: server.port)
        var requests = ""
        for i in 0..<200 { requests += #"{"op":"add","rid":\#(i),"user":"u","text":"t","vector":[1,2]}"# + "\n" }
        socket.send(requests)
        // Wait for the first answer so the server has surely received the batch of lines.
        #expect(socket.readLine()?.hasPrefix(#"{"ok":true,"rid":0,"#) == true)
        await server.server.shutdown()
        var answered = 1
        while let line = socket.readLine() {
            #expect(line.hasPrefix(#"{"ok":true,"#) || line.contains(#""code":"shutting_down""#), "\(line)")
            answered += 1
        }
        #expect(answered == 200)
        server.store.close()
    }
}
