import Benchmark
import ContextModel
import ContextProtocol

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal], warmupIterations: 10, maxDuration: .seconds(3))

    var state: UInt64 = 7
    let vector: [Float] = (0..<384).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 24) - 0.5
    }
    var writer = JSONWriter()
    writer.raw(#"{"op":"search","rid":17,"user":"alice","k":10,"vector":"#)
    writer.vector(vector)
    writer.raw("}")
    let searchLine = writer.bytes

    Benchmark("parse + decode a search request (384-d vector)") { benchmark in
        for _ in benchmark.scaledIterations {
            guard case .object(let object) = try JSONParser.parse(searchLine) else { fatalError() }
            blackHole(try Operations.Search.decode(object))
        }
    }

    let base64Line =
        Array(#"{"op":"search","rid":17,"user":"alice","k":10,"vector":""#.utf8) + Array(Base64.encode(vector).utf8)
        + Array(#""}"#.utf8)
    Benchmark("parse + decode a search request (384-d vector, base64)") { benchmark in
        for _ in benchmark.scaledIterations {
            guard case .object(let object) = try JSONParser.parse(base64Line) else { fatalError() }
            blackHole(try Operations.Search.decode(object))
        }
    }

    let memory = Memory(
        id: "5d0c3f8e-9a43-4b8e-8a52-2f8f6f1e8a11", user: "alice", session: "s-2024-11-28", role: .assistant,
        text: "We talked about your trip to Lisbon and the restaurants you liked near Alfama.",
        createdAt: 1_732_838_400_000, metadata: #"{"source":"chat","lang":"en"}"#, vector: [])
    let hits = (0..<10).map { ScoredMemory(memory: memory, score: 0.8123 - Float($0) * 0.01) }
    Benchmark("encode a search response (10 hits)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(Operations.Search.answerLine(.init(hits: hits), rid: .integer(17)))
        }
    }

    let ping = Array(#"{"op":"ping","rid":1}"#.utf8)
    Benchmark("parse + decode + answer ping") { benchmark in
        for _ in benchmark.scaledIterations {
            guard case .object(let object) = try JSONParser.parse(ping) else { fatalError() }
            blackHole(try Operations.Ping.decode(object))
            blackHole(Operations.Ping.answerLine(Nothing(), rid: object["rid"]))
        }
    }
}
