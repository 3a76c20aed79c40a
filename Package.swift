// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Coffer",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "coffer", targets: ["coffer"]),
        .library(name: "CofferVault", targets: ["CofferVault"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        // The agent daemon: HTTP status + metrics, Prometheus exposition.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // System C libraries: OpenSSL's libcrypto (AES-GCM, SHA-256, scrypt) and libzstd.
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CMariaDB", pkgConfig: "libmariadb",
                       providers: [.apt(["libmariadb-dev"])]),

        // The vault core: crypto, chunkers, packs, index, manifests, backends, pipeline.
        // Low-level file writing shared by the vault and the plugins (O_DIRECT).
        .target(name: "CofferIO", dependencies: ["CStreamingCopy"]),
        .target(name: "CStreamingCopy"),
        .target(name: "CofferVault", dependencies: ["CofferIO", "CLibCrypto", "CZstd"]),

        // The `coffer` command line: one file per command, no domain logic.
        .target(name: "CofferCLI", dependencies: [
            "CofferVault", "CofferAgent",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "coffer", dependencies: ["CofferCLI"]),
        // The daemon's executable (`coffer agent` and `coffer status` run it), apart so that
        // `coffer` loads none of its HTTP and metrics dependencies.
        .executableTarget(name: "coffer-agent", dependencies: [
            "CofferDaemon", "CofferAgent", "CofferVault",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // The plugin protocol: frames and messages, shared by the agent and every plugin.
        .target(name: "CofferPluginProtocol", dependencies: ["CSharedMemory"]),
        // memfd_create, for the memory data frames cross in (docs/plugin-protocol.md).
        .target(name: "CSharedMemory"),
        // What a plugin written in Swift links: the protocol loop around its engine logic.
        .target(name: "CofferPluginKit", dependencies: ["CofferPluginProtocol"]),
        // The agent side: finds, starts and supervises plugins and feeds the vault from them.
        .target(name: "CofferAgent", dependencies: [
            "CofferVault", "CofferPluginProtocol",
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),

        // `coffer agent`: schedules, supervises `coffer` child jobs, alerts, serves status and metrics.
        .target(name: "CofferDaemon", dependencies: [
            "CofferAgent",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // Engine plugins: one folder each under Plugins/, one executable each.
        .executableTarget(name: "coffer-postgres", dependencies: ["CofferPluginKit", "CofferIO", "CLibPQ", "CCRC32C", "CLibCrypto"], path: "Plugins/Postgres"),
        // CRC-32C with the CPU's instruction (SSE4.2), for the plugin's WAL record checks.
        .target(name: "CCRC32C"),
        .executableTarget(name: "coffer-mysql", dependencies: ["CofferPluginKit", "CofferIO", "CMariaDB"], path: "Plugins/MySQL"),
        // MongoDB: libmongoc and libbson; the engine logic is a library so tests reach it.
        .systemLibrary(name: "CMongoC", pkgConfig: "libmongoc-1.0",
                       providers: [.apt(["libmongoc-dev", "libbson-dev"])]),
        .target(name: "CofferMongoDB", dependencies: ["CofferPluginKit", "CMongoC"], path: "Plugins/MongoDB/Core"),
        .executableTarget(name: "coffer-mongodb", dependencies: ["CofferMongoDB", "CofferPluginKit"], path: "Plugins/MongoDB/Plugin"),

        // Test peers: a plugin that fails on request; throwaway database servers.
        .executableTarget(name: "coffer-fault", dependencies: ["CofferPluginKit", "CofferFixtures"], path: "Fixtures/FaultPlugin"),
        .target(name: "CofferFixtures", path: "Fixtures/CofferFixtures"),

        .testTarget(name: "CofferVaultTests", dependencies: ["CofferVault", "CofferIO", "CofferFixtures", "CZstd", "CStreamingCopy"]),
        .testTarget(name: "CofferCLITests", dependencies: ["CofferFixtures", "coffer"]),
        .testTarget(name: "CofferAgentTests", dependencies: ["CofferAgent", "CofferVault", "CofferFixtures", "coffer-fault", "coffer"]),
        .testTarget(name: "CofferDaemonTests", dependencies: [
            "CofferDaemon", "CofferAgent", "CofferVault", "CofferFixtures", "coffer-fault", "coffer-postgres", "coffer", "coffer-agent",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Retention and garbage collection: policies, the engine's chain, concurrent writers, crashes.
        .testTarget(name: "PruneTests", dependencies: ["CofferAgent", "CofferVault", "CofferFixtures", "coffer-postgres", "coffer"]),
        .testTarget(name: "PostgresPluginTests", dependencies: ["CofferAgent", "CofferVault", "CofferFixtures", "coffer-postgres", "coffer"]),
        .testTarget(name: "MySQLPluginTests", dependencies: ["CofferFixtures", "coffer-mysql", "coffer"]),
        .testTarget(name: "MongoDBPluginTests", dependencies: ["CofferMongoDB", "CofferFixtures", "coffer-mongodb", "coffer"]),
    ],
    swiftLanguageModes: [.v6]
)
