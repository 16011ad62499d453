// The smallest client of a ContextStore server: connects, asks `hello`, prints the answer.
// It links ContextClient alone, which carries no SQLite and no BLAS (a test checks with ldd).
//
//     contextstore-hello [host] [port]

import ContextClient
import ContextModel

#if canImport(Glibc)
    import Glibc
#endif

let arguments = CommandLine.arguments
let host = arguments.count > 1 ? arguments[1] : "127.0.0.1"
let port = arguments.count > 2 ? Int(arguments[2]) ?? 7420 : 7420
do {
    let client = try await ContextStoreClient.connect(host: host, port: port)
    let hello = try await client.hello()
    await client.close()
    print(
        "\(hello.server) \(hello.version), protocol \(hello.protocolVersion), "
            + "\(hello.memories.map { "\($0) memories" } ?? "memories not told to this key"),"
            + " \(hello.metric.rawValue) \(hello.index)")
} catch {
    print("contextstore-hello: \(error)")
    exit(1)
}
