// swift-tools-version: 6.0
import PackageDescription

// Layers, each depending only on the ones above it:
//   ContextModel (memories, roles, metrics, filters, searches, error codes; no dependencies)
//   CSQLite, CBLAS, CKernels (C shims: SQLite, BLAS, SIMD kernels), CScopedTokenizer (FTS5)
//   -> VectorIndex (flat index, HNSW graph), Embedder (MiniLM tokenizer and model)
//   -> MemoryStore (SQLite engine) -> ContextCluster (the write log in PostgreSQL, range replicas)
//   ContextModel -> ContextProtocol (JSON, wire codecs of every op; no C underneath)
//   -> ContextMCP (MCP tools over any line-protocol backend)
//   -> ContextServer (NIO server, op table, HTTP and MCP doors) / ContextClient (NIO client)
//   -> ContextTools (import, bench) -> contextstore (CLI)
let package = Package(
    name: "ContextStore",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "contextstore", targets: ["contextstore"]),
        .executable(name: "contextstore-hello", targets: ["contextstore-hello"]),
        .library(name: "ContextClient", targets: ["ContextClient"]),
        .library(name: "ContextServer", targets: ["ContextServer"]),
        .library(name: "ContextProtocol", targets: ["ContextProtocol"]),
        .library(name: "MemoryStore", targets: ["MemoryStore"]),
        .library(name: "ContextCluster", targets: ["ContextCluster"]),
        .library(name: "VectorIndex", targets: ["VectorIndex"]),
        .library(name: "Embedder", targets: ["Embedder"]),
        .library(name: "PromptBuilder", targets: ["PromptBuilder"]),
        .library(name: "ContextModel", targets: ["ContextModel"]),
        .library(name: "ContextTools", targets: ["ContextTools"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", exact: "0.12.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // Opens libblas.so.3 at run time (libblas-dev for its header, libopenblas0-pthread for
        // OpenBLAS); blas.c says why it is not linked.
        .target(name: "CBLAS"),
        .target(name: "ContextModel"),
        .target(name: "CKernels"),
        // The FTS5 tokenizer that gives each user's words doclists of their own.
        .target(name: "CScopedTokenizer", dependencies: ["CSQLite"]),
        .target(name: "VectorIndex", dependencies: ["ContextModel", "CBLAS", "CKernels"]),
        .target(name: "Embedder", dependencies: ["CBLAS", "CKernels"]),
        .target(
            name: "MemoryStore",
            dependencies: [
                "ContextModel", "CSQLite", "CScopedTokenizer", "VectorIndex",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The cluster's log of writes in PostgreSQL and the ranges' replicas that apply it.
        .target(
            name: "ContextCluster",
            dependencies: [
                "MemoryStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(name: "ContextProtocol", dependencies: ["ContextModel"]),
        // Prompts within a token budget; no storage or network code.
        .target(
            name: "PromptBuilder",
            dependencies: ["ContextModel", .product(name: "Mustache", package: "swift-mustache")]),
        .target(
            name: "ContextServer",
            dependencies: [
                "ContextClient",
                "ContextModel",
                "ContextProtocol",
                "Embedder",
                "ContextCluster",
                "ContextMCP",
                "MemoryStore",
                "PromptBuilder",
                "VectorIndex",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
            ]
        ),
        // One user's memories as MCP tools, resources and a prompt (the official Swift SDK).
        .target(
            name: "ContextMCP",
            dependencies: ["ContextProtocol", "ContextClient", .product(name: "MCP", package: "swift-sdk")]),
        .target(
            name: "ContextClient",
            dependencies: [
                "ContextModel",
                "ContextProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "ContextTools",
            dependencies: [
                "ContextModel", "ContextClient", "ContextProtocol", "MemoryStore", "Embedder", "VectorIndex",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "contextstore",
            dependencies: [
                "ContextCluster",
                "ContextModel",
                "ContextServer",
                "ContextClient",
                "ContextMCP",
                "ContextTools",
                "Embedder",
                "PromptBuilder",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A minimal client program: proof that a client links neither SQLite nor BLAS.
        .executableTarget(name: "contextstore-hello", dependencies: ["ContextClient", "ContextModel"]),
        .testTarget(name: "VectorIndexTests", dependencies: ["ContextModel", "VectorIndex", "CKernels"]),
        .testTarget(name: "MemoryStoreTests", dependencies: ["ContextModel", "MemoryStore"]),
        .testTarget(
            name: "ContextClusterTests",
            dependencies: [
                "ContextCluster", "ContextModel", "MemoryStore", "ContextServer", "ContextClient", "ContextProtocol",
            ]),
        .testTarget(name: "EmbedderTests", dependencies: ["Embedder", "CKernels"], exclude: ["Reference"]),
        .testTarget(
            name: "PromptBuilderTests",
            dependencies: [
                "PromptBuilder", "ContextModel", .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            exclude: ["Reference"]),
        .testTarget(
            name: "ContextToolsTests",
            dependencies: [
                "ContextModel", "ContextTools", "ContextServer", "ContextClient", "MemoryStore", "ContextProtocol",
                "Embedder",
            ]
        ),
        .testTarget(
            name: "ContextProtocolTests",
            dependencies: ["ContextModel", "ContextProtocol"]
        ),
        .testTarget(
            name: "ContextServerTests",
            dependencies: [
                "ContextModel", "ContextServer", "ContextClient", "ContextProtocol", "MemoryStore", "PromptBuilder",
                "VectorIndex", "contextstore", "contextstore-hello",
                "ContextMCP", .product(name: "MCP", package: "swift-sdk"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            exclude: ["Reference"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
