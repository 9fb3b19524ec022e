// swift-tools-version:6.2
// A pipeline step in Swift, in a package of its own: it depends on Sluice by path, registers its
// function beside the built-in ones and builds its own `sluice` binary (risk-sluice), which serves
// the shipped pipeline plus `risk`.
import PackageDescription

let package = Package(
    name: "swift-risk",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "sluice", path: "../.."),
    ],
    targets: [
        // The function, a CodableFunction: typed rows in, typed fields out.
        .target(name: "Risk", dependencies: [.product(name: "SluiceRuntime", package: "sluice")]),
        // The binary: Sluice's whole command line with `risk` registered.
        .executableTarget(name: "risk-sluice", dependencies: ["Risk", .product(name: "SluiceRuntime", package: "sluice")]),
        .testTarget(name: "RiskTests", dependencies: ["Risk", .product(name: "SluiceTesting", package: "sluice")]),
    ],
    swiftLanguageModes: [.v6]
)
