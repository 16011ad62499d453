// swift-tools-version: 6.1
import PackageDescription

// Benchmarks live in their own package so that their dependencies never reach users.
//   swift package --package-path Benchmarks benchmark            (package-benchmark suites)
//   swift run -c release --package-path Benchmarks loadgen ...   (server throughput over loopback)
let package = Package(
    name: "ContextStoreBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "ContextStore", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "FlatSearch",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ContextModel", package: "ContextStore"),
                .product(name: "VectorIndex", package: "ContextStore"),
            ],
            path: "Benchmarks/FlatSearch",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WireCodec",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ContextModel", package: "ContextStore"),
                .product(name: "ContextProtocol", package: "ContextStore"),
            ],
            path: "Benchmarks/WireCodec",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Embedding",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Embedder", package: "ContextStore"),
            ],
            path: "Benchmarks/Embedding",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "hnswbench",
            dependencies: [
                .product(name: "ContextModel", package: "ContextStore"),
                .product(name: "VectorIndex", package: "ContextStore"),
                .product(name: "ContextTools", package: "ContextStore"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "tokenbench",
            dependencies: [
                .product(name: "PromptBuilder", package: "ContextStore"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "embedbench",
            dependencies: [
                .product(name: "Embedder", package: "ContextStore"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "clientbench",
            dependencies: [
                .product(name: "ContextClient", package: "ContextStore"),
                .product(name: "ContextModel", package: "ContextStore"),
            ]
        ),
        .executableTarget(
            name: "loadgen",
            dependencies: [
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
