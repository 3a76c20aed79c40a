import CofferAgent
import CofferFixtures
import CofferVault
import Foundation
import XCTest

final class ConfigTests: XCTestCase {
    func testParsesVaultAndSources() throws {
        let config = try CofferConfig.parse("""
        [vault]
        path = "/var/lib/coffer/vault"
        passphrase_file = "/etc/coffer/passphrase"

        [source.main]
        engine = "postgres"
        connection = "host=/var/run/postgresql port=5432 user=postgres"  # libpq conninfo
        data_directory = "/var/lib/postgresql/15/main"
        parallel = 4
        plugin_timeout = 60

        [source.shop]
        engine = "mysql"
        """)
        XCTAssertEqual(config.vault.path, "/var/lib/coffer/vault")
        XCTAssertEqual(config.vault.passphraseFile, "/etc/coffer/passphrase")
        XCTAssertNil(config.vault.keyFile)
        let main = try config.source("main")
        XCTAssertEqual(main.engine, "postgres")
        XCTAssertEqual(main.pluginTimeout, 60)
        XCTAssertEqual(main.options, ["connection": "host=/var/run/postgresql port=5432 user=postgres",
                                      "data_directory": "/var/lib/postgresql/15/main", "parallel": "4"])
        XCTAssertEqual(try config.source("shop").pluginTimeout, 300)
    }

    func testRejectsWhatItDoesNotUnderstand() {
        let cases: [(String, String)] = [
            ("[source.a]\nconnection = \"x\"", "has no engine"),
            ("[vault]\npth = \"/x\"", "unknown key vault.pth"),
            ("[sources.a]\nengine = \"x\"", "unknown section or key 'sources'"),
            ("[source.a]\nengine = \"x\"\nplugin_timeout = -1", "plugin_timeout must be a positive"),
            ("[source.a]\nengine = \"x\"\nlist = [1, 2]", "must be a string, number or boolean"),
            ("[vault]\npath = ", "config:2"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try CofferConfig.parse(text)) {
                XCTAssertTrue("\($0)".contains(message), "'\($0)' should contain '\(message)'")
            }
        }
        XCTAssertThrowsError(try CofferConfig.parse("[source.a]\nengine = \"x\"").source("b")) {
            XCTAssertTrue("\($0)".contains("no source 'b' in the config file (it has: a)"), "\($0)")
        }
    }
}

/// `coffer backup` end to end: the real binary, a config file, and the fault plugin.
final class BackupCommandTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "coffer-cmd-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "pass\n".write(toFile: "\(dir)/pass", atomically: true, encoding: .utf8)
        try """
        [vault]
        path = "\(dir)/vault"
        passphrase_file = "\(dir)/pass"

        [source.db]
        engine = "fault"
        artifacts = "base:3000000:cdc,wal:1000:whole"
        seed = 5
        plugin_timeout = 20

        [source.broken]
        engine = "fault"
        artifacts = "base:3000000"
        fault = "crash-after:1000000"
        """.write(toFile: "\(dir)/coffer.toml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try coffer(["vault", "init"]).status, 0)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    var products: String { BuildProducts.directory(containing: "coffer") }

    func coffer(_ args: [String]) throws -> (status: Int32, out: String, err: String, bytes: Data) {
        try runCoffer(args, environment: ["COFFER_CONFIG": "\(dir)/coffer.toml", "COFFER_PLUGIN_PATH": products, "PATH": "/usr/bin:/bin"])
    }

    func testBackupCommandStoresWhatThePluginSends() throws {
        let run = try coffer(["backup", "--source", "db", "--json"])
        XCTAssertEqual(run.status, 0, run.err)
        struct Out: Decodable {
            let id: String; let engine: String; let size: Int64; let artifacts: Int
            let newBlobs: Int; let reusedBlobs: Int; let addedBytes: Int64
        }
        let out = try JSONDecoder().decode(Out.self, from: Data(run.out.utf8))
        XCTAssertEqual(out.engine, "fault")
        XCTAssertEqual(out.size, 3_001_000)
        XCTAssertEqual(out.artifacts, 2)
        XCTAssertGreaterThan(out.newBlobs, 0)
        XCTAssertGreaterThan(out.addedBytes, 0)
        // The same content again: everything is reused, nothing added.
        let again = try coffer(["backup", "--source", "db", "--json"])
        XCTAssertEqual(again.status, 0, again.err)
        let second = try JSONDecoder().decode(Out.self, from: Data(again.out.utf8))
        XCTAssertNotEqual(second.id, out.id)
        XCTAssertEqual(second.newBlobs, 0)
        XCTAssertEqual(second.addedBytes, 0)
        XCTAssertEqual(second.reusedBlobs, out.newBlobs + out.reusedBlobs)
        let wal = try coffer(["get", out.id, "wal"])
        XCTAssertEqual(wal.status, 0, wal.err)
        XCTAssertEqual(wal.bytes.count, 1000)
    }

    func testRestoreCommandRestoresTheNewestFullBackup() throws {
        XCTAssertEqual(try coffer(["backup", "--source", "db"]).status, 0)
        let newest = try coffer(["backup", "--source", "db"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        let target = dir + "/restored"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        let run = try coffer(["restore", "--source", "db", "--target-dir", target, "--json"])
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertTrue(run.out.contains(newest), run.out)
        var bytes = TestBytes(seed: 5)
        XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/\(newest)-base").map(Array.init), bytes.bytes(3_000_000))
        XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/\(newest)-wal").map(Array.init), bytes.bytes(1000))
        XCTAssertEqual(try coffer(["restore", "--source", "broken", "--target-dir", target]).status, 16, "no backup of that source")
    }

    func testFailedPluginExitsTwentyAndRecordsNothing() throws {
        let run = try coffer(["backup", "--source", "broken"])
        XCTAssertEqual(run.status, 20, run.err)
        XCTAssertTrue(run.err.contains("coffer-fault stopped unexpectedly"), run.err)
        XCTAssertTrue(run.err.contains("injecting crash-after"), "the plugin's log is quoted: \(run.err)")
        XCTAssertEqual(try coffer(["backups", "--json"]).out.trimmingCharacters(in: .whitespacesAndNewlines), "[\n\n]")
        XCTAssertEqual(try coffer(["vault", "check", "--read-data"]).status, 0)
    }

    func testUnknownSourceIsAUsageError() throws {
        let run = try coffer(["backup", "--source", "nosuch"])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.err.contains("no source 'nosuch'"), run.err)
    }
}
