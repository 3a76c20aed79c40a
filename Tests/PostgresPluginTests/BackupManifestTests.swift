import CofferFixtures
import CofferVault
import Foundation
import XCTest

/// PostgreSQL's own backup manifest: `pg_verifybackup` accepts a data directory restored from
/// a local-mode backup (Coffer writes the manifest) and from a remote-mode one (the server's
/// manifest, stored as it came), and rejects one whose relation file was changed.
final class BackupManifestTests: XCTestCase {
    static let verifier = PostgresServer.bin + "/pg_verifybackup"

    func testPgVerifybackupAcceptsRestoredBackupsOfBothModesAndCatchesACorruptFile() throws {
        let server = try PostgresServer()
        try server.sql("""
            CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL);
            INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
            """)
        let want = try server.sql("SELECT count(*), md5(string_agg(id || note, ',' ORDER BY id)) FROM ledger")
        let relation = try server.sql("SELECT pg_relation_filepath('ledger')").trimmingCharacters(in: .whitespacesAndNewlines)
        let vault = try PluginVault()
        let t0 = Date()
        let local = try vault.backup(server, remote: false)
        print("TIMING local", Date().timeIntervalSince(t0))
        try server.sql("INSERT INTO ledger VALUES (20001, 'between the backups')")
        let t1 = Date()
        let remote = try vault.backup(server, remote: true)
        print("TIMING remote", Date().timeIntervalSince(t1))

        XCTAssertEqual(try vault.vault.readManifest(id: local).metadata["mode"], "local")
        let remoteManifest = try vault.vault.readManifest(id: remote)
        XCTAssertEqual(remoteManifest.metadata["mode"], "remote")
        for key in ["start_lsn", "stop_lsn", "consistent_lsn", "timeline", "consistent_time"] {
            XCTAssertNotNil(remoteManifest.positions[key], "remote backup records \(key)")
        }
        XCTAssertTrue(remoteManifest.artifacts.contains { $0.name == "data/" + relation }, "the table is its own artifact")

        for (id, name) in [(local, "local"), (remote, "remote")] {
            let t2 = Date()
            let target = try vault.restore(id, name: name)
            print("TIMING restore", Date().timeIntervalSince(t2))
            XCTAssertTrue(FileManager.default.fileExists(atPath: target + "/backup_manifest"), "\(name): restore wrote backup_manifest")
            let check = try FixtureProcess.capture(BackupManifestTests.verifier, [target])
            print("TIMING verify", Date().timeIntervalSince(t2))
            XCTAssertEqual(check.status, 0, "\(name): pg_verifybackup rejected the restored directory: \(check.stdout)\(check.stderr)")
            XCTAssertTrue(check.stdout.contains("successfully verified"), "\(name): \(check.stdout)")
        }

        // The remote restore starts (recovering from the backup's own WAL) with the data.
        let restored = try PostgresServer(restoredDataDirectory: vault.dir + "/remote")
        try restored.start()
        XCTAssertEqual(try restored.sql("SELECT count(*), md5(string_agg(id || note, ',' ORDER BY id)) FROM ledger WHERE id <= 20000"), want)
        XCTAssertEqual(try restored.sql("SELECT note FROM ledger WHERE id = 20001"), "between the backups\n")
        try restored.stop()

        // One changed byte in the local restore's table is caught, by path.
        let file = vault.dir + "/local/" + relation
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: file))
        let corrupt = try FixtureProcess.capture(BackupManifestTests.verifier, [vault.dir + "/local"])
        XCTAssertNotEqual(corrupt.status, 0, corrupt.stdout)
        XCTAssertTrue(corrupt.stderr.contains(relation) && corrupt.stderr.contains("checksum mismatch"), corrupt.stderr)
    }

}
