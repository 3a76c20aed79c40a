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
}
