// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Baton",
    products: [
        .library(name: "Baton", targets: ["Baton"]),
        .executable(name: "baton", targets: ["baton"]),
    ],
    targets: [
        // The C header that is the whole contract between Swift and a compute backend.
        .target(name: "CBatonABI", path: "Sources/CBatonABI"),
        // The CPU backend's kernels: plain C plus OpenBLAS sgemm. Always optimised, even in debug
        // builds, so the test suite runs at a useful speed.
        .target(
            name: "CBatonCPU",
            dependencies: ["CBatonABI"],
            path: "Sources/CBatonCPU",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])],
            linkerSettings: [.linkedLibrary("openblas"), .linkedLibrary("m"), .linkedLibrary("pthread")]
        ),
        // Operating-system glue: CRC32C, stop-signal flags, atomic directory exchange.
        .target(name: "CBatonSystem", path: "Sources/CBatonSystem", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "Baton", dependencies: ["CBatonABI", "CBatonCPU", "CBatonSystem"], path: "Sources/Baton"),
        .executableTarget(name: "baton", dependencies: ["Baton"], path: "Sources/baton"),
        // libFuzzer targets for the readers of untrusted files; scripts/checks/fuzz builds it for fuzzing.
        .executableTarget(name: "baton-fuzz", dependencies: ["Baton"], path: "Sources/baton-fuzz"),
        // What both test targets share: paths, running `baton`, tiny data, TinyRunTestCase.
        .target(name: "BatonTestSupport", dependencies: ["Baton"], path: "Tests/BatonTestSupport"),
        // The tests that run in this process: seconds (`swift test --filter BatonTests`).
        .testTarget(
            name: "BatonTests",
            dependencies: ["Baton", "BatonTestSupport", "baton", "baton-fuzz", "CBatonSystem"],
            path: "Tests/BatonTests",
            exclude: ["Fixtures"]
        ),
        // The tests that start processes: `baton` (train, resume, kill, prepare, export ...),
        // mpirun, Python, a C compiler. Their fixtures are BatonTests' (TestPaths.fixtures).
        .testTarget(
            name: "BatonProcessTests",
            dependencies: ["Baton", "BatonTestSupport", "CBatonABI", "baton", "baton-fuzz"],
            path: "Tests/BatonProcessTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
