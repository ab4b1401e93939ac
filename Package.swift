// swift-tools-version:6.1
import PackageDescription

// Flags that keep the code honest (taken from swift-log and hummingbird's packages).
let swiftSettings: [SwiftSetting] = [
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

// What the service suites (Identity, Sync, Catalog, Sharing, WorkOrders) build on: the services,
// the shared fixtures and the libraries their tests call.
let serviceTestDependencies: [Target.Dependency] = [
  "EduHubTestSupport", "EduHubCore", "EduHubIdentity", "EduHubSync", "EduHubCatalog", "EduHubWorkOrders", "EduHubSharing", "EduHubNode",
  "EduHubAPI", "EduHubRPC", "EduHubStorage", "EduHubReplication", "EduHubCrypto", "EduHubPrivacy",
  .product(name: "GRDB", package: "GRDB.swift"), .product(name: "NIOCore", package: "swift-nio"),
  .product(name: "PropertyBased", package: "swift-property-based"),
  .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
  .product(name: "SwiftProtobuf", package: "swift-protobuf"),
]

let package = Package(
  name: "EduHub",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "eduhub", targets: ["eduhub"]),
    .library(name: "EduHubRPC", targets: ["EduHubRPC"]),
    .library(name: "EduHubAPI", targets: ["EduHubAPI"]),
    .library(name: "EduHubCrypto", targets: ["EduHubCrypto"]),
    .library(name: "EduHubStorage", targets: ["EduHubStorage"]),
    .library(name: "EduHubReplication", targets: ["EduHubReplication"]),
    .library(name: "EduHubPrivacy", targets: ["EduHubPrivacy"]),
    .library(name: "EduHubIdentity", targets: ["EduHubIdentity"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/yaslab/CSV.swift", from: "2.5.2"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    // W3C trace context through every call; OTLP export (gRPC only, the one exporter needed) when asked.
    .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
    .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPGRPC"]),
    .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
    // The web console's server-rendered pages (logic-less templates, HTML-escaped by default).
    .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
  ],
  targets: [
    // C libraries from Debian's packages.
    .systemLibrary(
      name: "CEduHubNghttp2",
      pkgConfig: "libnghttp2",
      providers: [.apt(["libnghttp2-dev"])]
    ),

    .systemLibrary(
      name: "CEduHubSodium",
      pkgConfig: "libsodium",
      providers: [.apt(["libsodium-dev"])]
    ),

    // The encrypting SQLite VFS (C, on the system's libsqlite3, the one GRDB uses, and libsodium).
    .target(
      name: "CEduHubSQLiteVFS",
      dependencies: ["CEduHubSodium"],
      linkerSettings: [.linkedLibrary("sqlite3"), .linkedLibrary("sodium")]
    ),

    // What every layer shares: the plain failure type.
    .target(name: "EduHubCore", swiftSettings: swiftSettings),

    // libsodium for the rest of EduHub: AEAD, Argon2id, Ed25519, keyed BLAKE2b, key files.
    .target(
      name: "EduHubCrypto",
      dependencies: ["CEduHubSodium"],
      swiftSettings: swiftSettings
    ),

    // The encrypted SQLite store: GRDB on the encrypting VFS, keys, migrations, the record store.
    .target(
      name: "EduHubStorage",
      dependencies: [
        "EduHubCrypto",
        "CEduHubSQLiteVFS",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "GRDBSQLite", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),

    // Hybrid logical clocks, version vectors, field-level merge, and the replica that stamps writes.
    .target(
      name: "EduHubReplication",
      dependencies: [
        "EduHubCore", "EduHubStorage", .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),

    // Field-level privacy of minors' data: ID numbers, age classes, masking and pseudonyms.
    .target(
      name: "EduHubPrivacy",
      dependencies: ["EduHubCore", "EduHubCrypto", "EduHubStorage", "EduHubAPI"],
      swiftSettings: swiftSettings
    ),

    // The identity service: org tree, people, accounts, login, tokens, roles, audit, data generator.
    .target(
      name: "EduHubIdentity",
      dependencies: [
        "EduHubCore", "EduHubAPI", "EduHubRPC", "EduHubCrypto", "EduHubStorage", "EduHubReplication", "EduHubPrivacy",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),

    // gRPC wire protocol over libnghttp2 and SwiftNIO. Knows nothing of education.
    .target(
      name: "EduHubRPC",
      dependencies: [
        "CEduHubNghttp2",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Tracing", package: "swift-distributed-tracing"),
      ],
      // The runtime's mutable state is confined to event loops; exclusivity is checked in debug
      // builds (every test run) and not paid for per access in release (about 6% of a call).
      swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
    ),

    // Generated from Protocols/ by Tools/generate: messages, service protocols, client stubs.
    .target(
      name: "EduHubAPI",
      dependencies: [
        "EduHubRPC",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),

    // Node-to-node sync: enrollment and authentication of downstream nodes (pull and push next).
    .target(
      name: "EduHubSync",
      dependencies: [
        "EduHubCore", "EduHubAPI", "EduHubRPC", "EduHubCrypto", "EduHubStorage", "EduHubIdentity", "EduHubPrivacy", "EduHubReplication",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Tracing", package: "swift-distributed-tracing"),
      ],
      swiftSettings: swiftSettings
    ),

    // The data catalog: resources, search with facets, follow (first step of issue 8).
    .target(
      name: "EduHubCatalog",
      dependencies: [
        "EduHubCore", "EduHubAPI", "EduHubRPC", "EduHubStorage", "EduHubIdentity", "EduHubPrivacy", "EduHubReplication",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),

    // Work orders: lifecycle as events, SLA clocks in working time, queues, statistics, Watch.
    .target(
      name: "EduHubWorkOrders",
      dependencies: [
        "EduHubCore", "EduHubAPI", "EduHubRPC", "EduHubCrypto", "EduHubStorage", "EduHubIdentity", "EduHubPrivacy", "EduHubReplication",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Tracing", package: "swift-distributed-tracing"),
      ],
      swiftSettings: swiftSettings
    ),

    // Sharing: applications, access requests and approval chains, grants, subscriptions, shared APIs.
    .target(
      name: "EduHubSharing",
      dependencies: [
        "EduHubCore", "EduHubAPI", "EduHubRPC", "EduHubCrypto", "EduHubStorage", "EduHubIdentity", "EduHubPrivacy", "EduHubCatalog", "EduHubReplication",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),

    // Composition of a node: configuration, standard services, the server's life cycle.
    .target(
      name: "EduHubNode",
      dependencies: [
        "EduHubCore",
        "EduHubRPC",
        "EduHubAPI",
        "EduHubIdentity",
        "EduHubSync",
        "EduHubCatalog",
        "EduHubWorkOrders",
        "EduHubSharing",
        "EduHubStorage",
        "EduHubReplication",
        "EduHubCrypto",
        "EduHubPrivacy",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Atomics", package: "swift-atomics"),
      ],
      swiftSettings: swiftSettings
    ),

    // The web console: server-rendered pages over the node's services, with the RPCs' caller resolution.
    .target(
      name: "EduHubConsole",
      dependencies: [
        "EduHubCore", "EduHubRPC", "EduHubAPI", "EduHubIdentity", "EduHubSync", "EduHubCatalog", "EduHubWorkOrders",
        "EduHubSharing", "EduHubNode", "EduHubCrypto", "EduHubReplication", "EduHubStorage",
        .product(name: "Mustache", package: "swift-mustache"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),

    // The `eduhub` command.
    .executableTarget(
      name: "eduhub",
      dependencies: [
        "EduHubCore",
        "EduHubNode",
        "EduHubConsole",
        "EduHubStorage",
        "EduHubCrypto",
        "EduHubRPC",
        "EduHubAPI",
        "EduHubIdentity",
        "EduHubSync",
        "EduHubCatalog",
        "EduHubWorkOrders",
        "EduHubSharing",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Yams", package: "Yams"),
        .product(name: "CSV", package: "CSV.swift"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Tracing", package: "swift-distributed-tracing"),
        .product(name: "OTel", package: "swift-otel"),
      ],
      swiftSettings: swiftSettings
    ),

    .testTarget(
      name: "EduHubRPCTests",
      dependencies: [
        "EduHubRPC",
        "EduHubTestSupport",
        "CEduHubNghttp2",
        .product(name: "Logging", package: "swift-log"),
        "EduHubAPI",
        "EduHubNode",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),
    // The storage benchmark: the same workload on a plain and an encrypted file.
    .executableTarget(
      name: "eduhub-bench-storage",
      dependencies: ["EduHubStorage", "EduHubCrypto", .product(name: "GRDB", package: "GRDB.swift")],
      path: "Tools/bench-storage",
      exclude: ["run"],
      swiftSettings: swiftSettings
    ),

    // The backup benchmark: full backup, shipping lag under a paced writer, restore.
    .executableTarget(
      name: "eduhub-bench-backup",
      dependencies: [
        "EduHubBenchSupport", "EduHubNode", "EduHubStorage", "EduHubCrypto", .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Tools/bench-backup",
      exclude: ["run"],
      swiftSettings: swiftSettings
    ),

    // What the benchmark clients share (options, a server's memory, percentiles).
    .target(name: "EduHubBenchSupport", path: "Tools/bench-support", swiftSettings: swiftSettings),

    // The masking benchmark: ListPeople pages with masking on and off.
    .executableTarget(
      name: "eduhub-bench-identity",
      dependencies: ["EduHubBenchSupport", 
        "EduHubIdentity", "EduHubNode", "EduHubAPI", "EduHubCrypto", .product(name: "Logging", package: "swift-log"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      path: "Tools/bench-identity",
      exclude: ["run"],
      swiftSettings: swiftSettings
    ),

    // The catalog benchmark's client: publish, ingest over client streaming, search.
    .executableTarget(
      name: "eduhub-bench-catalog",
      dependencies: ["EduHubBenchSupport", "EduHubAPI", "EduHubRPC", "EduHubStorage", .product(name: "GRDB", package: "GRDB.swift")],
      path: "Tools/bench-catalog",
      exclude: ["run"],
      swiftSettings: swiftSettings
    ),

    // The web console benchmark's load: signed-in browsers over HTTP/1.1 keep-alive.
    .executableTarget(
      name: "eduhub-bench-console",
      dependencies: [
        "EduHubBenchSupport", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      path: "Tools/bench-console",
      exclude: ["run"],
      swiftSettings: swiftSettings
    ),

    // The work order benchmark: generate orders into a node, then measure against `eduhub serve`.
    .executableTarget(
      name: "eduhub-bench-workorders",
      dependencies: ["EduHubBenchSupport", 
        "EduHubAPI", "EduHubRPC", "EduHubIdentity", "EduHubNode", "EduHubReplication", "EduHubStorage", "EduHubWorkOrders",
        .product(name: "Logging", package: "swift-log"), .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      path: "Tools/bench-workorders",
      exclude: ["run"],
      swiftSettings: swiftSettings
    ),

    // The sharing benchmark's client: sets up a table, an API and grants; subscription throughput and latency.
    .executableTarget(
      name: "eduhub-bench-sharing",
      dependencies: ["EduHubBenchSupport", "EduHubAPI", "EduHubRPC", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
      path: "Tools/bench-sharing",
      exclude: ["run"],
      swiftSettings: swiftSettings
    ),

    // Writes to an encrypted database until killed (for the crash tests).
    .executableTarget(
      name: "eduhub-storage-torture",
      dependencies: ["EduHubStorage", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")],
      path: "Tools/storage-torture",
      swiftSettings: swiftSettings
    ),

    .testTarget(
      name: "EduHubStorageTests",
      dependencies: [
        "EduHubStorage", "EduHubCrypto", "eduhub-storage-torture", .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "PropertyBased", package: "swift-property-based"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubReplicationTests",
      dependencies: [
        "EduHubReplication", "EduHubStorage", "EduHubCrypto",
        .product(name: "PropertyBased", package: "swift-property-based"),
        .product(name: "GRDB", package: "GRDB.swift"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubPrivacyTests",
      dependencies: [
        "EduHubPrivacy", "EduHubCrypto", "EduHubAPI", "EduHubStorage", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),
    // Fixtures the service suites share: a seeded central node on loopback, an enrolled county
    // node, the sharing world.
    .target(
      name: "EduHubTestSupport",
      dependencies: [
        "EduHubIdentity", "EduHubSync", "EduHubCatalog", "EduHubWorkOrders", "EduHubSharing", "EduHubNode", "EduHubAPI", "EduHubRPC",
        "EduHubStorage", "EduHubReplication", "EduHubCrypto", "EduHubPrivacy",
        .product(name: "GRDB", package: "GRDB.swift"), .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      path: "Tests/EduHubTestSupport",
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubIdentityTests",
      dependencies: serviceTestDependencies,
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubSyncTests",
      dependencies: serviceTestDependencies,
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubCatalogTests",
      dependencies: serviceTestDependencies,
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubSharingTests",
      dependencies: serviceTestDependencies,
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubWorkOrdersTests",
      dependencies: serviceTestDependencies,
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubConsoleTests",
      dependencies: serviceTestDependencies + ["EduHubConsole"],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubCryptoTests",
      dependencies: ["EduHubCrypto"],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "EduHubNodeTests",
      dependencies: [
        "EduHubNode", "EduHubAPI", "EduHubRPC", "EduHubStorage", "EduHubCrypto", "eduhub", "EduHubSync",
        "EduHubIdentity", "EduHubReplication", "EduHubTestSupport", "EduHubCore", "EduHubCatalog", "EduHubSharing", "EduHubWorkOrders",
        "EduHubPrivacy", .product(name: "PropertyBased", package: "swift-property-based"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "GRDB", package: "GRDB.swift"), .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),
  ],
  swiftLanguageModes: [.v6]
)
