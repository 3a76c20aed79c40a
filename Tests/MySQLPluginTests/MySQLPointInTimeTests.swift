import CofferFixtures
import Foundation
import XCTest

final class MySQLPointInTimeTests: XCTestCase {
    /// A physical base, then batches of ledger rows around a binlog rotation, captured
    /// continuously. Restores to a position, a time, a GTID and the latest point each hold
    /// exactly the rows committed there. Then a slice is deleted from the vault: verify
    /// names the file and fails, and a restore past the hole is refused (exit 22).
    func testRestoresToPositionTimeGTIDAndLatestAndRefusesPastAGap() throws {
        let vault = try MariaDBVault(extraSourceOptions: "capture_slice_seconds = \"1\"")
        try vault.createLedger()
        let capture = try vault.startCapture()
        defer { if capture.isRunning { capture.terminate(); capture.waitUntilExit() } }
        try vault.insert(1...100)
        try vault.run("backup", "--source", "phys")
        try vault.insert(101...200)
        let status = try vault.server.sql("SHOW MASTER STATUS").split(separator: "\t")
        let positionA = "\(status[0]):\(status[1].trimmingCharacters(in: .whitespacesAndNewlines))"
        let gtidA = try vault.server.value("SELECT @@gtid_binlog_pos")
        let timeT = try secondBoundary(vault.server)
        try vault.server.sql("FLUSH BINARY LOGS")
        try vault.insert(201...300)
        try vault.server.sql("FLUSH BINARY LOGS")
        try vault.insert(301...400)
        let gtidC = try vault.server.value("SELECT @@gtid_binlog_pos")
        try vault.waitUntilCaptured()
        capture.terminate()
        capture.waitUntilExit()

        let verify = try vault.coffer(["verify", "--source", "phys"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)

        XCTAssertEqual(try restoredIDs(vault, "to-position", ["--to-position", positionA]), Array(1...200))
        XCTAssertEqual(try restoredIDs(vault, "to-time", ["--to-time", timeT]), Array(1...200))
        XCTAssertEqual(try restoredIDs(vault, "to-gtid-a", ["--to-gtid", gtidA]), Array(1...200))
        XCTAssertEqual(try restoredIDs(vault, "to-gtid-c", ["--to-gtid", gtidC]), Array(1...400))
        XCTAssertEqual(try restoredIDs(vault, "latest", []), Array(1...400))

        // A hole: the slices of the middle file (rows 201..300) are removed from the vault.
        let files = try vault.binlogFiles
        let middle = files[files.count - 2]
        for s in try vault.slices() where s.file == middle {
            try FileManager.default.removeItem(atPath: vault.work + "/vault/manifests/" + s.id)
        }
        let broken = try vault.coffer(["verify", "--source", "phys"])
        XCTAssertNotEqual(broken.status, 0)
        XCTAssertTrue(broken.stdout.contains(middle), "verify names \(middle): \(broken.stdout) \(broken.stderr)")
        let refused = try vault.coffer(["restore", "--source", "phys", "--target-dir", vault.work + "/refused", "--to-gtid", gtidC])
        XCTAssertEqual(refused.status, 22, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("restorable windows"), refused.stderr)
        // Up to the hole it still works.
        XCTAssertEqual(try restoredIDs(vault, "before-hole", ["--to-position", positionA]), Array(1...200))
    }

    /// Waits (polling the server's clock) until a new second begins, returns that second
    /// (UTC), and waits until the next one: rows committed before the call are before it,
    /// rows committed after the call are at least a second after it.
    private func secondBoundary(_ server: MariaDBServer) throws -> String {
        let start = try server.value("SELECT UTC_TIMESTAMP()")
        var now = start
        while now == start { usleep(20_000); now = try server.value("SELECT UTC_TIMESTAMP()") }
        var later = now
        while later == now { usleep(20_000); later = try server.value("SELECT UTC_TIMESTAMP()") }
        return now
    }

    /// Restores into a new directory with these target arguments, starts a server on it
    /// and returns the ledger's ids.
    private func restoredIDs(_ vault: MariaDBVault, _ name: String, _ args: [String]) throws -> [Int] {
        let target = vault.work + "/" + name
        try vault.run(["restore", "--source", "phys", "--target-dir", target] + args)
        let server = try MariaDBServer(restoredDataDirectory: target)
        try server.start()
        return try MariaDBVault.ledger(server).map { Int($0.split(separator: "|")[0])! }
    }
}

final class LogicalPointInTimeTests: XCTestCase {
    /// A logical dump of one database plus the captured binlog, restored under a new name
    /// into the running server up to a position: exactly the rows committed there.
    func testLogicalDumpReplaysTheBinlogUnderANewName() throws {
        let vault = try MariaDBVault(extraSourceOptions: "capture_slice_seconds = \"1\"\ndatabases = \"shop\"")
        try vault.createLedger()
        let capture = try vault.startCapture(source: "logi")
        defer { if capture.isRunning { capture.terminate(); capture.waitUntilExit() } }
        try vault.insert(1...100)
        try vault.run("backup", "--source", "logi")
        try vault.insert(101...200)
        let status = try vault.server.sql("SHOW MASTER STATUS").split(separator: "\t")
        let positionA = "\(status[0]):\(status[1].trimmingCharacters(in: .whitespacesAndNewlines))"
        try vault.server.sql("FLUSH BINARY LOGS")
        try vault.insert(201...300)
        try vault.waitUntilCaptured(source: "logi")
        capture.terminate()
        capture.waitUntilExit()

        try vault.run("restore", "--source", "logi", "--target-dir", vault.work + "/unused", "--to-position", positionA,
                      "--set", "database.shop=shop_at_a")
        XCTAssertEqual(try MariaDBVault.ledger(vault.server, database: "shop_at_a").map { Int($0.split(separator: "|")[0])! }, Array(1...200))
        try vault.run("restore", "--source", "logi", "--target-dir", vault.work + "/unused", "--set", "database.shop=shop_latest")
        XCTAssertEqual(try MariaDBVault.ledger(vault.server, database: "shop_latest").map { Int($0.split(separator: "|")[0])! }, Array(1...300))
        XCTAssertEqual(try MariaDBVault.ledger(vault.server).count, 300, "the source database is untouched")
    }
}
