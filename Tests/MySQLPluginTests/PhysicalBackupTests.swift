import CofferFixtures
import Foundation
import XCTest

final class PhysicalBackupTests: XCTestCase {
    /// mariabackup under a write load, streamed into the vault; the restored data directory
    /// starts and holds exactly the ledger rows committed at the backup's binlog position.
    func testBackupUnderLoadRestoresTheRowsCommittedAtItsPosition() throws {
        let vault = try MariaDBVault()
        try vault.createLedger()
        try vault.server.sql("INSERT INTO ledger VALUES (0, 'seed', NULL)", database: "shop")
        let load = try LedgerLoad(vault.server, from: 1, count: 400_000)
        try load.waitForRows(2000)
        let backup: (id: String, positions: [String: String])
        do {
            backup = try vault.backup("phys")
        } catch {
            load.stop()
            throw error
        }
        try load.waitForRows((Int(try vault.server.value("SELECT MAX(id) FROM ledger", database: "shop")) ?? 0) + 500)
        load.stop()
        let file = try XCTUnwrap(backup.positions["binlog_file"])
        let position = try XCTUnwrap(backup.positions["binlog_pos"].flatMap(UInt64.init))
        XCTAssertFalse(backup.positions["gtid"]?.isEmpty ?? true)
        let committed = try MariaDBVault.idsCommitted(vault.server, upTo: file, position: position)
        XCTAssertGreaterThan(committed.count, 2000, "the backup ran under load")
        let total = try MariaDBVault.ledger(vault.server)
        XCTAssertGreaterThan(total.count, committed.count, "rows were committed after the backup's position")

        let target = vault.work + "/restored"
        try vault.run("restore", "--source", "phys", "--target-dir", target)
        let restored = try MariaDBServer(restoredDataDirectory: target)
        try restored.start()
        let rows = try MariaDBVault.ledger(restored)
        assertSameRows(rows.map { Int($0.split(separator: "|")[0])! }, committed, "restored ids vs committed at the position")
        assertSameRows(rows, Array(total.prefix(committed.count)), "restored rows vs the source's")
        XCTAssertEqual(try restored.value("SELECT @@gtid_binlog_pos"), "",
                       "a restored server starts with its own (empty) binlog")
    }

    /// The per-file layout dedupes page by page: after ~1% of a table's rows change, a second
    /// full backup adds only a small fraction of the table's size to the vault; restored, it
    /// holds the changed table exactly.
    /// With `--parallel=3` mariabackup interleaves the files' chunks, so files come in
    /// several runs (artifacts) each, which the restore puts back together.
    func testSecondBackupAfterASmallChangeStoresLittle() throws {
        let vault = try MariaDBVault(extraSourceOptions: "backup_parallel = \"3\"")
        try vault.server.sql("CREATE DATABASE shop")
        // ~1 KiB rows, half of them random bytes (which do not compress): ~60 MiB of pages.
        try vault.server.sql("""
            CREATE TABLE big (id INT PRIMARY KEY, txt VARCHAR(600), rnd VARBINARY(512)) ENGINE=InnoDB;
            INSERT INTO big SELECT seq, REPEAT(CONCAT('row ', seq, ' of a fairly repetitive text; '), 12), RANDOM_BYTES(512)
            FROM seq_1_to_60000
            """, database: "shop")
        try flushDirtyPages(vault.server)
        _ = try vault.server.sql("ANALYZE TABLE big", database: "shop")
        let tableBytes = try XCTUnwrap(Int(try vault.server.value(
            "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'big'")))
        XCTAssertGreaterThan(tableBytes, 50 << 20)
        let empty = try vault.vaultSize()
        _ = try vault.backup("phys")
        let afterFirst = try vault.vaultSize()
        // The first backup stores at least the random half: the bound below means something.
        XCTAssertGreaterThan(afterFirst - empty, tableBytes / 3)

        try vault.server.sql("UPDATE big SET rnd = RANDOM_BYTES(512) WHERE id <= 600", database: "shop")
        _ = try vault.backup("phys")
        let growth = try vault.vaultSize() - afterFirst
        print("second physical backup after a 1% change stored \(growth) bytes, table \(tableBytes) bytes")
        XCTAssertLessThan(growth, tableBytes / 20, "the second backup stored \(growth) bytes for a table of \(tableBytes) (over 5%)")

        // One artifact per file run: the table's first run by its path, later runs of
        // interleaved files as more/N/OFFSET/PATH.
        struct Listed: Decodable { let artifacts: [String] }
        let listed = try JSONDecoder().decode([Listed].self, from: Data(try vault.run("backups", "--source", "phys", "--json").utf8))
        let names = try XCTUnwrap(listed.last).artifacts
        XCTAssertTrue(names.contains("files/shop/big.ibd"), "\(names.prefix(20))")
        XCTAssertTrue(names.contains { $0.hasPrefix("more/") }, "no file came in several runs: \(names.prefix(20))")
        let expected = try vault.server.sql("SELECT COUNT(*), SUM(CRC32(CONCAT(id, txt, HEX(rnd)))) FROM big", database: "shop")
        let target = vault.work + "/restored"
        try vault.run("restore", "--source", "phys", "--target-dir", target)
        XCTAssertTrue(FileManager.default.fileExists(atPath: target + "/shop/big.ibd"))
        let restored = try MariaDBServer(restoredDataDirectory: target)
        try restored.start()
        // The first backup's rows would differ in the 600 changed ones: this is the second.
        XCTAssertEqual(try restored.sql("SELECT COUNT(*), SUM(CRC32(CONCAT(id, txt, HEX(rnd)))) FROM big", database: "shop"), expected)
    }

    /// Waits (with a deadline) until InnoDB has written every changed page: right after a
    /// bulk load the files hold few of the rows (the redo log holds them), and the pages
    /// written later would all count as changed, which a steady server's would not.
    private func flushDirtyPages(_ server: MariaDBServer) throws {
        try server.sql("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001, GLOBAL innodb_max_dirty_pages_pct = 0")
        let deadline = Date().addingTimeInterval(120)
        while try server.value("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'") != "0" {
            guard Date() < deadline else { throw FixtureError("InnoDB did not flush its dirty pages in 120 s") }
            usleep(100_000)
        }
    }
}
