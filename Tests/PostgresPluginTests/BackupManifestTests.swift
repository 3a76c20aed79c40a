import CofferFixtures
import CofferVault
import Foundation
import XCTest

/// Local and remote base backups of one server in one vault: the remote ones store only what
/// changed (both modes send the same files under the same names and chunking), and
/// `pg_verifybackup` accepts a data directory restored from either (Coffer writes the local
/// backup's manifest; the remote one stores the server's) and rejects one whose file changed.
final class BackupManifestTests: XCTestCase {
    static let verifier = PostgresServer.bin + "/pg_verifybackup"

    func testRemoteBackupsStoreOnlyChangesAndRestoresPassPgVerifybackup() throws {
        let server = try PostgresServer()
        try server.sql("""
            CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL);
            INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
            CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 6) AS filler FROM generate_series(1, 40000) g;
            """)
        // Settled pages (hint bits set, frozen), as after a table's first VACUUM: otherwise the
        // next read, or autovacuum coming by between the backups, changes every page.
        try server.sql("VACUUM (FREEZE, ANALYZE)")
        let tableBytes = Int64(try ArchivingCluster.value(server, "SELECT pg_relation_size('big')"))!
        let relation = try ArchivingCluster.value(server, "SELECT pg_relation_filepath('ledger')")
        let vault = try PluginVault()
        let local = try vault.backup(server, remote: false)
        let afterLocal = try vault.diskBytes()
        let first = try vault.backup(server, remote: true)
        let afterFirst = try vault.diskBytes()
        // 1% of the big table, as a batch job would touch it, and one new ledger row.
        try server.sql("UPDATE big SET filler = upper(filler) WHERE id BETWEEN 20000 AND 20399")
        try server.sql("INSERT INTO ledger VALUES (20001, 'between the backups')")
        let second = try vault.backup(server, remote: true)
        let afterSecond = try vault.diskBytes()
        print("vault after a local backup: \(afterLocal) bytes; a remote backup then added \(afterFirst - afterLocal), "
              + "a second one after a 1% update \(afterSecond - afterFirst) (table: \(tableBytes) bytes)")
        XCTAssertLessThan(Double(afterFirst - afterLocal), Double(afterLocal) * 0.1, "a remote backup after a local one of the same data")
        XCTAssertLessThan(Double(afterSecond - afterFirst), Double(tableBytes) * 0.05, "a second remote backup after a 1% change")

        XCTAssertEqual(try vault.vault.readManifest(id: local).metadata["mode"], "local")
        let manifest = try vault.vault.readManifest(id: second)
        XCTAssertEqual(manifest.metadata["mode"], "remote")
        for key in ["start_lsn", "stop_lsn", "consistent_lsn", "timeline", "consistent_time"] {
            XCTAssertNotNil(manifest.positions[key], "a remote backup records \(key)")
        }
        XCTAssertTrue(manifest.artifacts.contains { $0.name == "data/" + relation }, "the table is its own artifact")
        XCTAssertNotNil(try vault.vault.readManifest(id: first).positions["stop_lsn"])

        for (id, name) in [(local, "local"), (second, "remote")] {
            let target = try vault.restore(id, name: name)
            XCTAssertTrue(FileManager.default.fileExists(atPath: target + "/backup_manifest"), "\(name): restore wrote backup_manifest")
            // Run before the server starts (it renames backup_label); WAL parsed from pg_wal.
            let check = try FixtureProcess.capture(BackupManifestTests.verifier, [target])
            XCTAssertEqual(check.status, 0, "\(name): pg_verifybackup rejected the restored directory: \(check.stdout)\(check.stderr)")
            XCTAssertTrue(check.stdout.contains("successfully verified"), "\(name): \(check.stdout)")
        }

        // The remote restore starts (recovering from the backup's own WAL) with the data.
        let restored = try PostgresServer(restoredDataDirectory: vault.dir + "/remote")
        try restored.start()
        for query in ["SELECT count(*), md5(string_agg(id || note, ',' ORDER BY id)) FROM ledger",
                      "SELECT md5(string_agg(filler, '' ORDER BY id)) FROM big"] {
            XCTAssertEqual(try restored.sql(query), try server.sql(query))
        }
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
