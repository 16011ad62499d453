import ContextClient
import Foundation
import Testing

/// A client program links the protocol and NIO, never the storage engine's C libraries.
@Suite struct ClientLinkageTests {
    @Test func aClientLinksNeitherSQLiteNorBLAS() throws {
        let client = builtExecutable("contextstore-hello")
        let libraries = try runProgram("/usr/bin/ldd", [client])
        #expect(libraries.status == 0)
        #expect(libraries.output.contains("libc.so"))
        for forbidden in ["libsqlite3", "libblas", "libopenblas", "libcblas"] {
            #expect(!libraries.output.contains(forbidden), "\(forbidden) in:\n\(libraries.output)")
        }
        // The BLAS is opened at run time (CBLAS/blas.c), so its loader's symbols say who uses it.
        let symbols = try runProgram("/usr/bin/nm", [client])
        #expect(symbols.status == 0 && !symbols.output.contains("contextstore_blas_config"))
        // The server does use them: the checks can fail.
        let server = try runProgram("/usr/bin/ldd", [contextstoreExecutable()]).output
        #expect(server.contains("libsqlite3"))
        #expect(try runProgram("/usr/bin/nm", [contextstoreExecutable()]).output.contains("contextstore_blas_config"))
    }

    @Test func theClientTalksToARealServer() throws {
        let folder = TemporaryFolder()
        let server = try ServerProcess(database: folder.path + "/space.db", arguments: ["--dim", "3"])
        let answer = try runProgram(builtExecutable("contextstore-hello"), ["127.0.0.1", String(server.port)])
        #expect(answer.status == 0)
        #expect(answer.output == "contextstore 0.1.0, protocol 1, 0 memories, cosine flat\n")
        server.signal(SIGTERM)
        #expect(server.process.terminationStatus == 0)
    }
}

/// A call on a connection the server has closed fails at once; it once waited forever.
@Suite struct ClosedConnectionTests {
    @Test func aCallAfterTheServerClosedFails() async throws {
        let server = try await TestServer(dimension: 2)
        let client = try await ContextStoreClient.connect(port: server.port)
        try await client.ping()
        await server.stop()
        for _ in 0..<3 {
            await #expect(throws: ClientError.connectionClosed) { try await client.ping() }
        }
        await client.close()
    }
}
