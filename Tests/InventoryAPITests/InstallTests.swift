import Foundation
import HTTPTypes
import HummingbirdTesting
import Inventory
import InventoryTestSupport
import NIOCore
import Testing

/// An `inventoryd` installed outside the checkout (issue 19): `bin/inventoryd` with its data in
/// `share/inventoryd/` (the layout `scripts/install.sh` makes) finds its scripts, migrations and API document by
/// itself, and serves.
@Suite("Installed outside the checkout")
struct InstallTests {
    @Test("copied with its data into a fresh folder, the binary migrates, serves the document and reserves from there")
    func installedLayout() async throws {
        let built = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: built), "build inventoryd first (scripts/test.sh does)")
        let files = FileManager.default
        let prefix = files.temporaryDirectory.appendingPathComponent("inventoryd-install-\(UUID().uuidString)")
        defer { try? files.removeItem(at: prefix) }
        try files.createDirectory(at: prefix.appendingPathComponent("bin"), withIntermediateDirectories: true)
        try files.createDirectory(at: prefix.appendingPathComponent("share/inventoryd"), withIntermediateDirectories: true)
        let binary = prefix.appendingPathComponent("bin/inventoryd")
        try files.copyItem(atPath: built, toPath: binary.path)
        for folder in ["lua", "migrations", "openapi"] {
            try files.copyItem(
                atPath: ProjectFiles.repositoryDirectory(folder),
                toPath: prefix.appendingPathComponent("share/inventoryd/\(folder)").path
            )
        }

        try await TestStores.with { stores in
            var environment = stores.serviceEnvironment()
            for name in ["INVENTORY_LUA_DIR", "INVENTORY_MIGRATIONS_DIR", "INVENTORY_OPENAPI_DIR"] { environment[name] = nil }
            environment["INVENTORY_SWEEP_INTERVAL_MS"] = "0"
            environment["INVENTORY_RECONCILE_INTERVAL_SECONDS"] = "0"
            environment["INVENTORY_LOG_LEVEL"] = "info"

            let migrate = Process()
            migrate.executableURL = binary
            migrate.arguments = ["migrate"]
            migrate.environment = environment
            migrate.currentDirectoryURL = prefix
            migrate.standardOutput = Pipe()
            try migrate.run()
            migrate.waitUntilExit()
            #expect(migrate.terminationStatus == 0)

            let server = try ServeProcess.launch(binary: binary.path, environment: environment)
            defer {
                server.killIfRunning()
                server.removeLog()
            }
            try await server.waitUntilServing()
            // The start line names the folders it uses: the installed ones, not the repository's.
            let installed = prefix.appendingPathComponent("share/inventoryd").standardizedFileURL.path
            for folder in ["lua", "migrations", "openapi"] {
                #expect(server.output().contains("\(folder)=\(installed)/\(folder)"), "\(folder): \(server.output())")
            }

            let client = TestClient(host: "127.0.0.1", port: server.port, configuration: .init(timeout: .seconds(5)))
            client.connect()
            let json: HTTPFields = [.contentType: "application/json"]
            let document = try await client.get("/openapi.json")
            #expect(document.status == .ok)
            let put = try await client.put("/v1/stock/\(stores.bizId)/1", headers: json, body: ByteBuffer(string: #"{"stock": 5}"#))
            #expect(put.status == .ok)
            let reserve = #"{"orderId": "\#(stores.bizId)-i", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 2}]}"#
            let held = try await client.post("/v1/reservations", headers: json, body: ByteBuffer(string: reserve))
            #expect(held.status == .created)
            try await client.shutdown()
            server.terminate()
            #expect(try await server.exitStatus(within: .seconds(10)) == 0)
            #expect(try await stores.engine.stock(stores.item(1)).reserved == 2)
        }
    }
}
