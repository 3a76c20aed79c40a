import CofferFixtures
import Foundation
import XCTest

final class BinlogCaptureTests: XCTestCase {
    /// A follow capture through FLUSH BINARY LOGS rotations, a server restart and a capture
    /// (plugin) restart: every binlog file put together from the vault's slices is the
    /// server's file byte for byte, and holds every ledger insert.
    func testCaptureKeepsEveryEventThroughRotationsAndRestarts() throws {
        let vault = try MariaDBVault(extraSourceOptions: "capture_slice_seconds = \"1\"")
        try vault.createLedger()
        try vault.insert(1...100)
        try vault.server.sql("FLUSH BINARY LOGS")
        try vault.insert(101...200)
        var capture = try vault.startCapture()
        defer { if capture.isRunning { capture.terminate(); capture.waitUntilExit() } }
        try vault.insert(201...300)
        try vault.server.sql("FLUSH BINARY LOGS")
        try vault.insert(301...400)
        try vault.server.stop()
        try vault.server.start()
        try vault.insert(401...500)
        try vault.server.sql("FLUSH BINARY LOGS")
        try vault.insert(501...600)
        try vault.waitUntilCaptured()
        capture.terminate()
        capture.waitUntilExit()
        try vault.insert(601...700)
        capture = try vault.startCapture()
        try vault.waitUntilCaptured()
        capture.terminate()
        capture.waitUntilExit()

        let files = try vault.binlogFiles
        XCTAssertGreaterThanOrEqual(files.count, 5, "rotations and the restart made new files")
        var inserts = 0
        for file in files {
            let server = try vault.serverBinlog(file)
            let stored = try vault.assembled(file)
            XCTAssertEqual(stored.count, server.count, "\(file): stored \(stored.count) bytes, the server has \(server.count)")
            XCTAssertTrue(stored == server, "\(file) is stored byte for byte")
            let copy = vault.work + "/" + file
            try Data(stored).write(to: URL(fileURLWithPath: copy))
            let text = try FixtureProcess.output("/usr/bin/mariadb-binlog", ["--base64-output=decode-rows", "--verbose", copy])
            inserts += text.components(separatedBy: "### INSERT INTO `shop`.`ledger`").count - 1
        }
        XCTAssertEqual(inserts, 700, "every insert is in the stored binlog")
        let closed = try vault.slices().filter { $0.positions["closed"] == "1" }.map(\.file)
        XCTAssertEqual(Set(closed), Set(files.dropLast()), "every file but the active one is closed in the vault")
    }

    /// On demand (`backup --type log`): stores all there is now, and the next run goes on
    /// exactly after it.
    func testOnDemandLogBackupResumesAfterTheLastSlice() throws {
        let vault = try MariaDBVault()
        try vault.createLedger()
        try vault.insert(1...50)
        try vault.server.sql("FLUSH BINARY LOGS")
        try vault.insert(51...80)
        try vault.run("backup", "--source", "phys", "--type", "log")
        let first = try vault.slices()
        try vault.insert(81...120)
        // Where the server's binlog ends as the backup starts: all of it must be stored. The
        // server may append afterwards on its own (MariaDB writes a binlog checkpoint event
        // into the active file once the previous file's commits are durable, asynchronously),
        // which this run need not have seen; the next one takes it.
        let status = try vault.server.sql("SHOW MASTER STATUS").split(separator: "\t")
        let (activeFile, activeEnd) = (String(status[0]), Int(status[1])!)
        try vault.run("backup", "--source", "phys", "--type", "log")
        let second = try vault.slices()
        XCTAssertGreaterThan(second.count, first.count)
        for file in try vault.binlogFiles {
            let stored = try vault.assembled(file), server = try vault.serverBinlog(file)
            if file == activeFile {
                XCTAssertGreaterThanOrEqual(stored.count, activeEnd, "\(file) is stored up to where it ended when the backup began")
                XCTAssertTrue(stored == Array(server.prefix(stored.count)), "\(file): what is stored is the server's, byte for byte")
            } else {
                XCTAssertTrue(stored == server, "\(file) is stored byte for byte")
            }
        }
    }
}
