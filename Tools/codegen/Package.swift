// swift-tools-version:6.0
// The code generator lives in a package of its own so that building the node never compiles
// SwiftProtobufPluginLibrary or protoc-gen-swift (a first build of those takes about ten minutes).
import PackageDescription

let package = Package(
  name: "EduHubCodegen",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "protoc-gen-eduhub", targets: ["protoc-gen-eduhub"])
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0")
  ],
  targets: [
    .executableTarget(
      name: "protoc-gen-eduhub",
      dependencies: [.product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf")]
    )
  ],
  swiftLanguageModes: [.v6]
)
