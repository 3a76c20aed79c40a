import CofferAgent
import CofferFixtures
import CofferPluginProtocol
import CofferVault
import Foundation
import XCTest

/// coffer-postgres against a real PostgreSQL 15 started by the fixture.
final class BaseBackupTests: XCTestCase {
    /// A fresh vault and the plugin driven through the agent (PluginVault), per test.
    var scratch: PluginVault!
    var vault: Vault { scratch.vault }

    override func setUpWithError() throws { scratch = try PluginVault() }

    override func tearDownWithError() throws { scratch = nil }

    func backup(_ server: PostgresServer) throws -> String { try scratch.backup(server, remote: false) }

    func restoreAndStart(_ id: String, name: String) throws -> PostgresServer {
        let target = try scratch.restore(id, name: name)
        let restored = try PostgresServer(restoredDataDirectory: target)
        do {
            try restored.start()
        } catch {
            XCTFail("restored server did not start: \(error)\n\(restored.log)")
            throw error
        }
        return restored
    }

    /// A backup taken while another session commits rows restores to a consistent state:
    /// every row committed before the backup started, and exactly the rows the writer had
    /// committed up to some point (a prefix of its sequence), nothing torn.
    func testBackupUnderWriteLoadRestoresConsistently() throws {
        let server = try PostgresServer()
        try server.sql("""
            CREATE TABLE ledger (id bigint PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
            INSERT INTO ledger (id, payload) SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
            CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 8) AS filler FROM generate_series(1, 60000) g;
            """)
        let before = try server.sql("SELECT count(*), md5(string_agg(id || payload, ',' ORDER BY id)) FROM ledger")

        // One writer commits rows 20001, 20002, ... one transaction each, until told to stop
        // (however long the backup takes: its WAL is reserved, so none of it is recycled).
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        writer.arguments = ["-X", "-q", "-h", server.socketDirectory, "-U", "postgres", "-d", "postgres", "-c", """
            DO $$ BEGIN FOR i IN 20001..2000000000 LOOP
              INSERT INTO ledger (id, payload) VALUES (i, md5(i::text)); COMMIT;
              EXIT WHEN EXISTS (SELECT 1 FROM pg_class WHERE relname = 'stop_writer');
            END LOOP; END $$;
            """]
        let writerErrors = Pipe()
        writer.standardError = writerErrors
        try writer.run()
        // Wait for the writer to be under way, on its progress rather than on a clock.
        while Int(try server.sql("SELECT count(*) FROM ledger").trimmingCharacters(in: .whitespacesAndNewlines))! < 21000 {
            guard writer.isRunning else {
                let message = String(decoding: writerErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                return XCTFail("the writer stopped before the backup: \(message)")
            }
            usleep(10_000)
        }
        let id = try backup(server)
        try server.sql("CREATE TABLE stop_writer ()")
        writer.waitUntilExit()
        XCTAssertEqual(writer.terminationStatus, 0)
        let written = Int(try server.sql("SELECT max(id) FROM ledger").trimmingCharacters(in: .whitespacesAndNewlines))!

        let manifest = try vault.readManifest(id: id)
        XCTAssertNotNil(manifest.positions["start_lsn"])
        XCTAssertNotNil(manifest.positions["stop_lsn"])
        XCTAssertEqual(manifest.positions["timeline"], "1")
        XCTAssertTrue(manifest.artifacts.contains { $0.name == "data/backup_label" })
        XCTAssertTrue(manifest.artifacts.contains { $0.name.hasPrefix("data/pg_wal/") })

        let restored = try restoreAndStart(id, name: "restored")
        let count = Int(try restored.sql("SELECT count(*) FROM ledger").trimmingCharacters(in: .whitespacesAndNewlines))!
        let maxID = Int(try restored.sql("SELECT max(id) FROM ledger").trimmingCharacters(in: .whitespacesAndNewlines))!
        XCTAssertEqual(count, maxID, "restored rows are exactly 1...\(maxID): no gaps, no torn commits")
        XCTAssertGreaterThan(maxID, 21000, "rows committed before the backup started are there")
        XCTAssertLessThan(maxID, written, "rows committed after the backup ended are not")
        XCTAssertEqual(try restored.sql("SELECT count(*), md5(string_agg(id || payload, ',' ORDER BY id)) FROM ledger WHERE id <= 20000"),
                       before)
        XCTAssertEqual(try restored.sql("SELECT md5(string_agg(id || payload, ',' ORDER BY id)) FROM ledger"),
                       try server.sql("SELECT md5(string_agg(id || payload, ',' ORDER BY id)) FROM ledger WHERE id <= \(maxID)"),
                       "every restored row equals the source's row")
        XCTAssertEqual(try restored.sql("SELECT md5(string_agg(filler, '' ORDER BY id)) FROM big"),
                       try server.sql("SELECT md5(string_agg(filler, '' ORDER BY id)) FROM big"))
    }

    /// After about 1% of a table's rows change, a second full backup stores only the changed
    /// blocks (plus its WAL), not the table again.
    func testSecondBackupStoresOnlyChangedBlocks() throws {
        let server = try PostgresServer()
        try server.sql("CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 6) AS filler FROM generate_series(1, 400000) g")
        // Settled pages, as a table has after its first VACUUM: otherwise the next scan sets
        // hint bits on every page and every block changes, whatever the update touched.
        try server.sql("VACUUM (FREEZE) big")
        try server.sql("CHECKPOINT")
        let tableBytes = Int64(try server.sql("SELECT pg_relation_size('big')").trimmingCharacters(in: .whitespacesAndNewlines))!
        _ = try backup(server)
        let first = try scratch.diskBytes()
        // 1% of the rows, as a batch job would touch them: a contiguous range of ids.
        try server.sql("UPDATE big SET filler = upper(filler) WHERE id BETWEEN 200000 AND 203999")
        try server.sql("CHECKPOINT")
        let second = try backup(server)
        let growth = try scratch.diskBytes() - first
        print("second backup after a 1% update added \(growth) bytes for a \(tableBytes)-byte table")
        XCTAssertLessThan(Double(growth), Double(tableBytes) * 0.05,
                          "second backup added \(growth) bytes for a \(tableBytes)-byte table")
        let restored = try restoreAndStart(second, name: "restored2")
        XCTAssertEqual(try restored.sql("SELECT md5(string_agg(filler, '' ORDER BY id)) FROM big"),
                       try server.sql("SELECT md5(string_agg(filler, '' ORDER BY id)) FROM big"))
    }
}
