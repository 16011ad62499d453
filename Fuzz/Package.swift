// swift-tools-version: 6.0
import PackageDescription

// libFuzzer targets, in a package of their own so the main build never links libFuzzer.
// Build and run them with scripts/fuzz (it passes -sanitize=fuzzer).
let package = Package(
    name: "ContextStoreFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "ContextStore", path: "..")],
    targets: [
        .executableTarget(
            name: "FuzzRequest",
            dependencies: [
                .product(name: "ContextProtocol", package: "ContextStore"),
                .product(name: "ContextServer", package: "ContextStore"),
                .product(name: "PromptBuilder", package: "ContextStore"),
            ]),
        .executableTarget(
            name: "FuzzImport", dependencies: [.product(name: "ContextTools", package: "ContextStore")]),
    ],
    swiftLanguageModes: [.v6]
)
