// swift-tools-version: 6.0
import PackageDescription

// Layers, each depending only on the ones above it:
//   CSQLite, CBLAS (C shims) -> VectorIndex (kernels, flat index) -> MemoryStore (SQLite engine)
//   -> ContextProtocol (wire types, JSON) -> ContextServer / ContextClient -> contextstore (CLI)
let package = Package(
    name: "ContextStore",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "contextstore", targets: ["contextstore"]),
        .library(name: "ContextClient", targets: ["ContextClient"]),
        .library(name: "ContextServer", targets: ["ContextServer"]),
        .library(name: "ContextProtocol", targets: ["ContextProtocol"]),
        .library(name: "MemoryStore", targets: ["MemoryStore"]),
        .library(name: "VectorIndex", targets: ["VectorIndex"]),
        .library(name: "Embedder", targets: ["Embedder"]),
        .library(name: "ContextTools", targets: ["ContextTools"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CBLAS",
            providers: [.apt(["libblas-dev", "libopenblas0-pthread"])]
        ),
        .target(name: "CKernels"),
        .target(name: "VectorIndex", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "Embedder", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "MemoryStore", dependencies: ["CSQLite", "VectorIndex"]),
        .target(name: "ContextProtocol", dependencies: ["MemoryStore"]),
        .target(
            name: "ContextServer",
            dependencies: [
                "ContextProtocol",
                "Embedder",
                "MemoryStore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "ContextClient",
            dependencies: [
                "ContextProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ]
        ),
        .target(
            name: "ContextTools",
            dependencies: [
                "ContextClient", "ContextProtocol", "MemoryStore", "Embedder", "VectorIndex",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "contextstore",
            dependencies: [
                "ContextServer",
                "ContextClient",
                "ContextTools",
                "Embedder",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "VectorIndexTests", dependencies: ["VectorIndex", "CKernels"]),
        .testTarget(name: "MemoryStoreTests", dependencies: ["MemoryStore"]),
        .testTarget(name: "EmbedderTests", dependencies: ["Embedder", "CKernels"], exclude: ["Reference"]),
        .testTarget(
            name: "ContextToolsTests",
            dependencies: [
                "ContextTools", "ContextServer", "ContextClient", "MemoryStore", "ContextProtocol", "Embedder",
            ]
        ),
        .testTarget(
            name: "ContextProtocolTests",
            dependencies: ["ContextProtocol"]
        ),
        .testTarget(
            name: "ContextServerTests",
            dependencies: [
                "ContextServer", "ContextClient", "ContextProtocol", "MemoryStore", "VectorIndex", "contextstore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
