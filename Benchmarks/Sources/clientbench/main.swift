// The Swift client's side of Benchmarks/scripts/clients.sh: search latency one call at a
// time, and throughput with many calls in flight on one connection (pipelined), printed as one
// JSON line like the Python and TypeScript clients' scripts.
//   swift run -c release --package-path Benchmarks clientbench PORT [USER] [SEQUENTIAL] [CONCURRENT]
import ContextClient
import ContextModel
import Foundation

let arguments = CommandLine.arguments
guard arguments.count > 1, let port = Int(arguments[1]) else {
    FileHandle.standardError.write(Data("usage: clientbench PORT [USER] [SEQUENTIAL] [CONCURRENT]\n".utf8))
    exit(2)
}
let user = arguments.count > 2 ? arguments[2] : "bench"
let sequential = arguments.count > 3 ? Int(arguments[3]) ?? 2000 : 2000
let concurrent = arguments.count > 4 ? Int(arguments[4]) ?? 1000 : 1000

/// Random unit vectors of 384 dimensions, from a fixed seed (queries vary, so no cache answers them).
struct Queries {
    var state: UInt64 = 42

    mutating func next() -> [Float] {
        var vector = (0..<384).map { _ -> Float in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for i in vector.indices { vector[i] /= norm }
        return vector
    }
}
var queries = Queries()

let client = try await ContextStoreClient.connect(port: port)
for _ in 0..<200 {  // warm-up, untimed
    _ = try await client.search(SearchRequest(user: user, vector: queries.next(), k: 10))
}
var latencies: [Double] = []
for _ in 0..<sequential {
    let request = SearchRequest(user: user, vector: queries.next(), k: 10)
    let started = ContinuousClock.now
    _ = try await client.search(request)
    let took = ContinuousClock.now - started
    latencies.append(Double(took.components.attoseconds) / 1e12 + Double(took.components.seconds) * 1e6)
}
latencies.sort()
let requests = (0..<concurrent).map { _ in SearchRequest(user: user, vector: queries.next(), k: 10) }
let started = ContinuousClock.now
try await withThrowingTaskGroup(of: Void.self) { group in
    for request in requests { group.addTask { _ = try await client.search(request) } }
    try await group.waitForAll()
}
let elapsed = ContinuousClock.now - started
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
print(
    #"{"client":"swift","p50_us":\#(latencies[latencies.count / 2]),"p99_us":\#(latencies[latencies.count * 99 / 100]),"pipelined_per_s":\#(Double(concurrent) / seconds)}"#
)
await client.close()
