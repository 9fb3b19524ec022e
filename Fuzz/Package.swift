// swift-tools-version:6.1
// libFuzzer targets for every parser that reads bytes from outside: `make fuzz` runs each for
// minutes, `make test` for seconds (scripts/fuzz.sh). Built with
// `swift build --sanitize=fuzzer --sanitize=address` (libFuzzer supplies `main`), so a package of
// its own, plus `-Xswiftc -sanitize=fuzzer,address`: SwiftPM's flag instruments only this
// package's targets, and without coverage in Sluice and SluiceUploads libFuzzer is blind.
import PackageDescription

let targets = ["FuzzJSON", "FuzzNDJSON", "FuzzText", "FuzzJSONArray", "FuzzCSV", "FuzzXML", "FuzzChunk"]

let package = Package(
    name: "sluice-fuzz",
    platforms: [.macOS(.v15)],
    products: targets.map { .executable(name: $0, targets: [$0]) },
    dependencies: [
        .package(name: "sluice", path: ".."),
    ],
    targets: [
        .target(
            name: "FuzzSupport",
            dependencies: [
                .product(name: "Sluice", package: "sluice"),
                .product(name: "SluiceUploads", package: "sluice"),
            ]
        ),
    ] + targets.map { name in
        .executableTarget(
            name: name,
            dependencies: [
                "FuzzSupport",
                .product(name: "Sluice", package: "sluice"),
                .product(name: "SluiceUploads", package: "sluice"),
            ]
        )
    },
    swiftLanguageModes: [.v6]
)
