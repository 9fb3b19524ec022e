// swift-tools-version:6.2
import PackageDescription

// Every target of ours: warnings are errors (ignored when Sluice is a dependency of another package).
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "Sluice", targets: ["Sluice"]),
        // A package of your own: its functions beside the built-in ones, and the whole CLI in its
        // binary (SluiceApplication, CodableFunction); SluiceTesting runs a function in process.
        .library(name: "SluiceRuntime", targets: ["SluiceRuntime"]),
        .library(name: "SluiceTesting", targets: ["SluiceTesting"]),
        // The upload decoders alone, for the fuzz targets in Fuzz/ (a package of its own).
        .library(name: "SluiceUploads", targets: ["SluiceUploads"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", exact: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types", exact: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", exact: "1.35.2"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CJWT", pkgConfig: "libjwt",
                       providers: [.apt(["libjwt-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        // Typed wrappers for variadic system calls (prctl).
        .systemLibrary(name: "CSluiceSystem"),
        .target(
            name: "SluiceNotify",
            dependencies: [
                "Sluice", "CCurl",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Sluice",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Personal data: the scanner, the masker, the `pii-mask` middleware and consent rules.
        .target(
            name: "SluicePrivacy",
            dependencies: ["Sluice"],
            swiftSettings: strict
        ),
        // `sluice render`: Kubernetes objects and a Compose file from the manifests.
        .target(
            name: "SluiceDeploy",
            dependencies: ["Sluice", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        // The upload formats' streaming decoders: pure logic on bytes, fuzzed by Fuzz/.
        .target(
            name: "SluiceUploads",
            dependencies: ["Sluice"],
            swiftSettings: strict
        ),
        .target(
            name: "SluiceRedis",
            dependencies: [
                "Sluice", "CHiredis",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SluicePostgres",
            dependencies: [
                "Sluice", "CLibPQ",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SluiceHTTP",
            dependencies: [
                "Sluice", "CJWT",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SluiceFunctions",
            dependencies: [
                "Sluice", "SluiceRedis", "SluicePostgres", "SluiceHTTP", "SluiceNotify", "SluiceUploads", "SluicePrivacy", "CSluiceSystem",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "sluice",
            dependencies: ["SluiceRuntime"],
            swiftSettings: strict
        ),
        .target(
            name: "SluiceTesting",
            dependencies: ["SluiceRuntime", "Sluice", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "SluiceRuntime",
            dependencies: [
                "Sluice", "SluiceRedis", "SluicePostgres", "SluiceHTTP", "SluiceFunctions", "SluiceDeploy",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SluiceTests",
            dependencies: ["Sluice", "SluiceFunctions", "SluiceDeploy", "SluiceRedis", "SluicePostgres", "SluiceHTTP", "SluiceNotify", "SluiceUploads",
                           "SluicePrivacy", "SluiceRuntime", "SluiceTesting",
                           .product(name: "Yams", package: "Yams"),
                           .product(name: "HummingbirdTesting", package: "hummingbird"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "HTTPTypes", package: "swift-http-types")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SluiceIntegrationTests",
            dependencies: [
                "Sluice", "SluiceRedis", "SluicePostgres", "SluiceFunctions", "SluiceNotify", "SluiceUploads", "SluicePrivacy",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SluiceEndToEndTests",
            dependencies: [
                "Sluice", "SluiceRedis", "SluicePostgres", "SluiceHTTP", "SluiceNotify", "SluiceFunctions", "SluiceDeploy", "SluicePrivacy",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
