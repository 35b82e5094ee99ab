// swift-tools-version:6.2
import PackageDescription

/// Settings every Rapport target shares: Swift 6 language mode (the tools version's default), warnings as errors,
/// `any` spelled out for existentials.
let strict: [SwiftSetting] = [
    .treatAllWarnings(as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Rapport",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "CaptureWorker", targets: ["CaptureWorker"]),
        .executable(name: "ReceiptWorker", targets: ["ReceiptWorker"]),
        .executable(name: "SurveyWorker", targets: ["SurveyWorker"]),
        .executable(name: "EchoWorker", targets: ["EchoWorker"]),
        .executable(name: "EmbeddedKafka", targets: ["EmbeddedKafka"]),
        .executable(name: "rapport-tool", targets: ["RapportTool"]),
        .executable(name: "rapport-bench", targets: ["RapportBench"]),
        .executable(name: "rapport-fuzz", targets: ["RapportFuzz"]),
        .library(name: "Shared", targets: ["Shared"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // The only two C libraries, each a system-library target holding nothing but its module map and shim.
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .target(
            name: "Shared",
            dependencies: [
                "CRdKafka",
                "CLibPQ",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        // Each input topic's events as its worker reads them, checked against the contract at decode: a library, so that
        // the fuzz targets (RapportFuzz) exercise the workers' own decoders.
        .target(
            name: "InboundEvents",
            dependencies: ["Shared"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "CaptureWorker",
            dependencies: ["Shared", "InboundEvents", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        // ReceiptWorker's next-sale model (counts, candidates, ranking): a library, because SurveyWorker recommends
        // from it too and the benchmark evaluates it on purchase histories.
        .target(
            name: "NextSale",
            dependencies: ["Shared"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ReceiptWorker",
            dependencies: [
                "Shared", "InboundEvents", "NextSale", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        // Churn risk (the formula, and what it is computed from): a library, because the benchmark measures it on
        // purchase histories.
        .target(
            name: "Churn",
            dependencies: ["Shared"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "SurveyWorker",
            dependencies: [
                "Shared", "InboundEvents", "NextSale", "Churn", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        // The pipeline's test and benchmark subject: two rows and one command per event.
        .executableTarget(
            name: "EchoWorker",
            dependencies: ["Shared", .product(name: "Logging", package: "swift-log")],
            resources: [.copy("Migrations")],
            swiftSettings: strict
        ),
        // librdkafka's mock cluster, for the embedded Kafka, the benchmark and the tests: never in a worker.
        .target(
            name: "KafkaTesting",
            dependencies: ["Shared", "CRdKafka", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EmbeddedKafka",
            dependencies: [
                "Shared",
                "KafkaTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "RapportTool",
            dependencies: [
                "Shared",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // The benchmark measures the Swift layer against bare librdkafka and libpq, so it alone outside Shared and
        // KafkaTesting imports the C modules.
        .executableTarget(
            name: "RapportBench",
            dependencies: [
                "Shared",
                "KafkaTesting",
                "NextSale",
                "Churn",
                "CRdKafka",
                "CLibPQ",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // libFuzzer targets over the decoders (scripts/fuzz builds it with -sanitize=fuzzer and -DFUZZING); built
        // plainly, it replays files through the same decoders, so that a crash's input can be run under a debugger.
        .executableTarget(
            name: "RapportFuzz",
            dependencies: ["Shared", "InboundEvents"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SharedTests",
            dependencies: ["Shared"],
            swiftSettings: strict
        ),
        // The consent property's steps and oracle, shared by the model's property test and the worker process's.
        .target(
            name: "ConsentScenarios",
            dependencies: ["Shared"],
            path: "Tests/ConsentScenarios",
            swiftSettings: strict
        ),
        // The workers' pure models, without PostgreSQL or Kafka: `swift test --filter '^ModelTests\.'` needs no servers.
        .testTarget(
            name: "ModelTests",
            dependencies: ["Shared", "InboundEvents", "CaptureWorker", "ReceiptWorker", "SurveyWorker", "NextSale", "ConsentScenarios"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Shared", "KafkaTesting", "ConsentScenarios", "InboundEvents", "CaptureWorker", "ReceiptWorker", "SurveyWorker", "NextSale", "Churn",
            ],
            swiftSettings: strict
        ),
    ]
)
