import Foundation
import Testing

@testable import InventoryAPI
@testable import InventorySettings

/// Settings from a file and a folder of secrets (issue 19), under the same names and checks as the environment.
@Suite("Settings from files")
struct SettingsSourcesTests {
    func withFolder(_ body: (URL) throws -> Void) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("inventory-settings-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try body(folder)
    }

    @Test("an env-style file, a secrets folder and the environment: the environment wins, then the secrets")
    func layers() throws {
        try withFolder { folder in
            let file = folder.appendingPathComponent("inventoryd.env")
            try """
                # settings of this host
                INVENTORY_HTTP_PORT=9090
                INVENTORY_MYSQL_USER = "shop"
                INVENTORY_MYSQL_PASSWORD=from-the-file
                INVENTORY_DURABILITY=sync
                """.write(to: file, atomically: true, encoding: .utf8)
            let secrets = folder.appendingPathComponent("secrets")
            try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
            try "from-the-secrets\n".write(to: secrets.appendingPathComponent("INVENTORY_MYSQL_PASSWORD"), atomically: true, encoding: .utf8)
            let settings = try ServiceConfiguration.fromEnvironment([
                "INVENTORY_CONFIG_FILE": file.path, "INVENTORY_SECRETS_DIR": secrets.path, "INVENTORY_DURABILITY": "async",
            ])
            #expect(settings.httpPort == 9090)
            #expect(settings.mysql.user == "shop")
            #expect(settings.mysql.password == "from-the-secrets")
            #expect(settings.engine.durability == .async)
        }
    }

    @Test("a JSON file: strings, numbers and booleans; a bad value gets the same check as in the environment")
    func json() throws {
        try withFolder { folder in
            let file = folder.appendingPathComponent("inventoryd.json")
            try #"{"INVENTORY_HTTP_PORT": 9191, "INVENTORY_WORKER": false, "INVENTORY_KEY_PREFIX": "shop"}"#
                .write(to: file, atomically: true, encoding: .utf8)
            let settings = try ServiceConfiguration.fromEnvironment(["INVENTORY_CONFIG_FILE": file.path])
            #expect(settings.httpPort == 9191)
            #expect(settings.runWorker == false)
            #expect(settings.engine.keys.prefix == "shop")

            try #"{"INVENTORY_HTTP_PORT": 70000}"#.write(to: file, atomically: true, encoding: .utf8)
            #expect {
                try ServiceConfiguration.fromEnvironment(["INVENTORY_CONFIG_FILE": file.path])
            } throws: { "\($0)".contains("INVENTORY_HTTP_PORT=70000") }
            try #"{"INVENTORY_HTTP_PORT": [1]}"#.write(to: file, atomically: true, encoding: .utf8)
            #expect {
                try ServiceConfiguration.fromEnvironment(["INVENTORY_CONFIG_FILE": file.path])
            } throws: { "\($0)".contains("INVENTORY_CONFIG_FILE") }
        }
        #expect {
            try ServiceConfiguration.fromEnvironment(["INVENTORY_CONFIG_FILE": "/nonexistent/inventoryd.env"])
        } throws: { "\($0)".contains("INVENTORY_CONFIG_FILE=/nonexistent/inventoryd.env cannot be read") }
    }
}
