// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "authjs-sidecar",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "authjs-sidecar", targets: ["AuthJSSidecarCLI"]),
        .library(name: "AuthJSToken", targets: ["AuthJSToken"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // System libraries (apt: libssl-dev, libjansson-dev).
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CJansson", pkgConfig: "jansson", providers: [.apt(["libjansson-dev"])]),
        // The one place that calls EVP: byte buffers in, byte buffers out.
        .target(name: "CAuthCrypto", dependencies: ["COpenSSL"], linkerSettings: [.linkedLibrary("crypto")]),
        // Jansson's allocations for one parse from a per-thread buffer (thread-local storage, allocator hooks).
        .target(name: "CJSONArena", dependencies: ["CJansson"]),
        // Pure token verification: no NIO, no I/O, `now` is a parameter.
        .target(name: "AuthJSToken", dependencies: ["CAuthCrypto", "CJansson", "CJSONArena"]),
        // Pure policy: config, extraction, CORS, routes, claim headers, sanitising.
        .target(name: "SidecarCore", dependencies: ["AuthJSToken"]),
        // All I/O: listener, proxy, upstream pool, health, lifecycle, logs.
        .target(name: "SidecarServer", dependencies: [
            "SidecarCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOExtras", package: "swift-nio-extras"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "AuthJSSidecarCLI", dependencies: [
            "SidecarServer", "SidecarCore", "AuthJSToken",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], exclude: ["link-order.txt"], linkerSettings: [
            // Resident memory, measured (README "Performance"): packed relative relocations (DT_RELR, glibc ≥ 2.36)
            // shrink the 2.2 MB relocation table the loader reads at every start to 17 KB, and not exporting the
            // executable's ~13 000 symbols drops the dynamic symbol tables the loader consults. −3 MiB RSS; ASLR
            // (PIE) is unchanged. lld ships with the Swift toolchain; gold cannot pack relocations.
            .unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                          "-Xlinker", "--no-export-dynamic",
                          // The functions that run first and on every request, in that order (Tests/bench/link-order.sh
                          // makes the list): fewer code pages touched, fewer mapped by the kernel's fault-around
                          // (−1.5 to −2 MiB resident, README "Performance"). Names a build lacks are skipped.
                          "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Sources/AuthJSSidecarCLI/link-order.txt",
                          "-Xlinker", "--no-warn-symbol-ordering"], .when(platforms: [.linux])),
        ]),
        // Release-built micro-benchmark (ns/op), never a timed unit test.
        .executableTarget(name: "SidecarBench", dependencies: ["AuthJSToken", "SidecarCore"]),
        // libFuzzer entry point for every pure parser and the client pipeline (FUZZ_TARGET selects one); see Tests/fuzz/run.sh.
        .executableTarget(name: "SidecarFuzz", dependencies: [
            "AuthJSToken", "SidecarCore", "SidecarServer",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        // Test support shared by the test targets: fixture loading and the vector-case schema.
        .target(name: "VectorFixtures", dependencies: ["AuthJSToken"], path: "Tests/VectorFixtures"),
        .testTarget(name: "AuthJSTokenTests", dependencies: ["AuthJSToken", "CAuthCrypto", "CJSONArena", "VectorFixtures"]),
        .testTarget(name: "SidecarCoreTests", dependencies: ["SidecarCore", "VectorFixtures"]),
        .testTarget(name: "SidecarServerTests", dependencies: [
            "SidecarServer",
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
    ]
)
