// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "inventory",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "inventoryd", targets: ["inventoryd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // C shims: each is touched only by its one Swift wrapper module.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CMariaDB",
            pkgConfig: "libmariadb",
            providers: [.apt(["libmariadb-dev"])]
        ),
        .target(
            name: "RedisClient",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "MySQLClient",
            dependencies: [
                "CMariaDB",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Inventory",
            dependencies: [
                "RedisClient",
                "MySQLClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            // Every setting of the service, from the environment, a config file and secrets (no HTTP): what
            // `inventoryd` composes the service, the worker and the reconciler from.
            name: "InventorySettings",
            dependencies: [
                "Inventory",
                "RedisClient",
                "MySQLClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "InventoryAPI",
            dependencies: [
                "Inventory",
                "InventorySettings",
                "RedisClient",
                "MySQLClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            // The database-only design, for side-by-side benchmarks (INVENTORY_ENGINE=db): not the service's engine.
            name: "InventoryBaseline",
            dependencies: ["Inventory", "MySQLClient"]
        ),
        .executableTarget(
            name: "inventoryd",
            dependencies: [
                "InventoryAPI",
                "InventorySettings",
                "Inventory",
                "InventoryBaseline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "InventoryTestSupport",
            dependencies: [
                "Inventory", "RedisClient", "MySQLClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "RedisClientTests",
            dependencies: ["RedisClient", "InventoryTestSupport", .product(name: "NIOSSL", package: "swift-nio-ssl")]
        ),
        .testTarget(
            name: "MySQLClientTests",
            dependencies: ["MySQLClient", "Inventory", "InventoryTestSupport"]
        ),
        .testTarget(
            name: "JournalRepositoryTests",
            dependencies: ["Inventory", "MySQLClient", "InventoryTestSupport"]
        ),
        .testTarget(
            name: "InventoryTests",
            dependencies: ["Inventory", "InventoryBaseline", "InventoryTestSupport"]
        ),
        .testTarget(
            name: "InventoryAPITests",
            dependencies: [
                "InventoryAPI",
                "InventorySettings",
                "InventoryTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // The load harness (issue 5): the logic is a library so its tests call the code the binary runs.
        .target(
            name: "LoadHarness",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "loadtest/Sources/LoadHarness"
        ),
        .executableTarget(
            name: "loadgen",
            dependencies: ["LoadHarness"],
            path: "loadtest/Sources/loadgen"
        ),
        // The fault suite (issue 6): its own Redis and MariaDB, the real inventoryd, faults under load.
        .target(
            name: "FaultSuite",
            dependencies: [
                "LoadHarness", "Inventory", "InventoryTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "loadtest/Sources/FaultSuite"
        ),
        .executableTarget(
            name: "faults",
            dependencies: ["FaultSuite", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "loadtest/Sources/faults"
        ),
        .testTarget(
            name: "FaultSuiteTests",
            dependencies: ["FaultSuite", "InventoryTestSupport"],
            path: "loadtest/Tests/FaultSuiteTests"
        ),
        // The model check (issue 18): seeded programs against the real stores and a reference model.
        .target(
            name: "ModelCheck",
            dependencies: ["Inventory", "InventoryTestSupport", "RedisClient", "MySQLClient", "LoadHarness", "FaultSuite"],
            path: "loadtest/Sources/ModelCheck"
        ),
        .executableTarget(
            name: "modelcheck",
            dependencies: ["ModelCheck", "Inventory", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "loadtest/Sources/modelcheck"
        ),
        .testTarget(
            name: "ModelCheckTests",
            dependencies: ["ModelCheck", "Inventory", "InventoryTestSupport"],
            path: "loadtest/Tests/ModelCheckTests"
        ),
        .testTarget(
            name: "LoadHarnessTests",
            dependencies: [
                "LoadHarness",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "loadtest/Tests/LoadHarnessTests"
        ),
    ]
)
