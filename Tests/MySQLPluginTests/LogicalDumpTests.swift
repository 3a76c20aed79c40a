import CofferFixtures
import Foundation
import XCTest

final class LogicalDumpTests: XCTestCase {
    /// The parallel dump under a write load, restored under a new database name into the
    /// same server: the ledger holds exactly the rows committed at the dump's binlog
    /// position, a table of awkward types comes back value for value, the view works.
    func testDumpUnderLoadRestoresUnderANewName() throws {
        try dumpUnderLoad(connections: 3)
    }

    /// One connection reads every table (the edge case of the shared snapshot).
    func testASingleConnectionDumpStaysInItsSnapshot() throws {
        try dumpUnderLoad(connections: 1)
    }

    private func dumpUnderLoad(connections: Int) throws {
        let vault = try MariaDBVault(dumpConnections: connections)
        try vault.createLedger()
        try vault.server.sql("""
            CREATE TABLE kinds (id INT PRIMARY KEY, d DECIMAL(20,6), f DOUBLE, t DATETIME(6), b BIT(12), j JSON,
                                txt TEXT, bin VARBINARY(64), e ENUM('x','y'), u VARCHAR(20) CHARACTER SET utf8mb4, g POINT,
                                l VARCHAR(20) CHARACTER SET latin1 DEFAULT 'défaut' COMMENT 'größe',
                                s VARCHAR(20) CHARACTER SET sjis) COMMENT 'tableau ü';
            INSERT INTO kinds VALUES
              (1, 12345678901234.123456, 1.5e-300, '2026-11-26 12:34:56.789012', b'101010101010', '{"a": [1, "two"]}',
               'line one\\nline two\\twith \\'quotes\\' and \\\\ backslash; ) , (', UNHEX('00FF0A0D5C27'), 'y', 'ünï 🚀', POINT(1.5, -2),
               'café ñ', '表ソ'),
              (2, NULL, -0.0, '1970-01-01 00:00:01', b'0', 'null', '', '', NULL, '', NULL, '', '');
            CREATE VIEW recent AS SELECT id, note FROM ledger WHERE id > 10;
            """, database: "shop")
        let load = try LedgerLoad(vault.server, from: 1, count: 400_000)
        try load.waitForRows(3000)
        let backup: (id: String, positions: [String: String])
        do { backup = try vault.backup("logi") } catch { load.stop(); throw error }
        load.stop()
        // Rows were read as each column stores them (DumpSchema.rowCharset), not converted.
        let schema = try JSONSerialization.jsonObject(with: Data(try vault.run("get", backup.id, "schema.json").utf8)) as? [String: Any]
        XCTAssertEqual(schema?["rowCharset"] as? String, "binary")
        let committed = try MariaDBVault.idsCommitted(vault.server, upTo: try XCTUnwrap(backup.positions["binlog_file"]),
                                                      position: try XCTUnwrap(backup.positions["binlog_pos"].flatMap(UInt64.init)))
        XCTAssertGreaterThan(committed.count, 3000)
        let source = try MariaDBVault.ledger(vault.server)
        XCTAssertGreaterThan(source.count, committed.count, "rows were committed after the dump's position")

        let mark = try binlogEnd(vault.server)
        try vault.run("restore", "--source", "logi", "--target-dir", vault.work + "/unused", "--set", "database.shop=shop_copy")
        XCTAssertGreaterThan(try rowsLogged(vault.server, into: "shop_copy", since: mark), 0, "restored rows go to the binlog by default")
        let rows = try MariaDBVault.ledger(vault.server, database: "shop_copy")
        assertSameRows(rows.map { Int($0.split(separator: "|")[0])! }, committed, "restored ids vs committed at the position")
        let byID = Dictionary(uniqueKeysWithValues: source.map { (Int($0.split(separator: "|")[0])!, $0) })
        assertSameRows(rows, committed.map { byID[$0]! }, "restored rows vs the source's")
        // Rows cross as each column's own bytes (DumpSchema.rowCharset): latin1's one byte a
        // letter, and Shift-JIS letters whose second byte is a backslash (表 and ソ: 0x5C).
        XCTAssertEqual(try vault.server.value("SELECT CONCAT(HEX(l), ' ', HEX(s)) FROM kinds WHERE id = 1", database: "shop"),
                       "636166E920F1 955C835C")
        let everything = "SELECT id, HEX(d), f, t, HEX(b), j, HEX(txt), HEX(bin), e, HEX(u), HEX(g), HEX(l), HEX(s) FROM kinds ORDER BY id"
        XCTAssertEqual(try vault.server.sql(everything, database: "shop_copy"), try vault.server.sql(everything, database: "shop"))
        // Non-ASCII defaults and comments: the rows were read in the binary charset, the
        // definitions (compared for DDL during the dump) must still come back as they were.
        XCTAssertEqual(try vault.server.sql("SHOW CREATE TABLE kinds", database: "shop_copy"),
                       try vault.server.sql("SHOW CREATE TABLE kinds", database: "shop"))
        XCTAssertEqual(try vault.server.value("SELECT HEX(DEFAULT(l)) FROM kinds WHERE id = 1", database: "shop_copy"), "64E966617574")
        XCTAssertEqual(try vault.server.value("SELECT COUNT(*) FROM recent", database: "shop_copy"),
                       String(committed.filter { $0 > 10 }.count))

        if connections > 1 {
            // restore_binlog = off: the same rows, none of them in the server's binlog.
            let mark = try binlogEnd(vault.server)
            try vault.run("restore", "--source", "logi", "--target-dir", vault.work + "/unused", "--set", "database.shop=shop_nolog",
                          "--set", "restore_binlog=off")
            XCTAssertEqual(try MariaDBVault.ledger(vault.server, database: "shop_nolog"), rows)
            XCTAssertEqual(try vault.server.sql(everything, database: "shop_nolog"), try vault.server.sql(everything, database: "shop"))
            XCTAssertEqual(try rowsLogged(vault.server, into: "shop_nolog", since: mark), 0)
        }

        // Restoring over the tables that exist now is refused before any row is written.
        let again = try vault.coffer(["restore", "--source", "logi", "--target-dir", vault.work + "/unused", "--set", "database.shop=shop_copy"])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("shop_copy.kinds exists already") || again.stderr.contains("shop_copy.ledger exists already"), again.stderr)
    }

    /// A second dump after ~1% of a table's rows changed (and their escaped length with them)
    /// stores little: statements end at rows chosen by their content, so the rows
    /// after the change are cut into the same statements as in the first dump.
    func testASecondDumpAfterASmallChangeStoresLittle() throws {
        let vault = try MariaDBVault(dumpConnections: 2)
        try vault.server.sql("CREATE DATABASE shop")
        try vault.server.sql("""
            CREATE TABLE big (id INT PRIMARY KEY, txt VARCHAR(600), rnd VARBINARY(512)) ENGINE=InnoDB;
            INSERT INTO big SELECT seq, REPEAT(CONCAT('row ', seq, ' of a fairly repetitive text; '), 12), \(noise(512, "big"))
            FROM seq_1_to_60000;
            CREATE TABLE big2 LIKE big;
            INSERT INTO big2 SELECT seq, REPEAT(CONCAT('other row ', seq, '; '), 20), \(noise(400, "big2")) FROM seq_1_to_40000;
            """, database: "shop")
        let empty = try vault.vaultSize()
        _ = try vault.backup("logi")
        let first = try vault.vaultSize() - empty
        XCTAssertGreaterThan(first, 45 << 20, "the random halves alone are 46 MiB")
        // NUL bytes, escaped as two each: every changed row grows by ~500 bytes in the dump.
        try vault.server.sql("UPDATE big SET rnd = REPEAT(CHAR(0), 512) WHERE id <= 600", database: "shop")
        let before = try vault.vaultSize()
        _ = try vault.backup("logi")
        let growth = try vault.vaultSize() - before
        print("second logical dump after a 1% change stored \(growth) bytes, the first \(first)")
        // The vault's chunks average 1 MiB of a ~66 MiB dump: the changed rows and the chunks
        // around them, and a few statements until their ends fall where they fell before,
        // are a few MiB. Cut at a byte count, every later statement moved: ~100%.
        XCTAssertLessThan(growth, first / 5, "the second dump stored \(growth) bytes of the first's \(first) (over 20%)")

        // The ~66 MiB table went into several parts (DumpFormat.endsPart), cut at the same
        // rows both times: the growth above would be the whole table otherwise. The two
        // tables were read at once and their parts sent in turn. A restore over two
        // connections puts the parts back together in order.
        struct Listed: Decodable { let id: String; let artifacts: [String] }
        let listed = try JSONDecoder().decode([Listed].self, from: Data(try vault.run("backups", "--source", "logi", "--json").utf8))
        XCTAssertEqual(listed.count, 2)
        for backup in listed {
            let parts = backup.artifacts.filter { $0.hasPrefix("data/shop/big.sql") }
            XCTAssertGreaterThanOrEqual(parts.count, 3, "\(backup.artifacts)")
            XCTAssertEqual(parts.first, "data/shop/big.sql")
            let tables = backup.artifacts.filter { $0.hasPrefix("data/shop/big") }.map { $0.hasPrefix("data/shop/big2.sql") ? 2 : 1 }
            XCTAssertEqual(Array(tables.prefix(2)), [1, 2], "the tables' first parts come in turn: \(backup.artifacts)")
        }
        try vault.run("restore", "--source", "logi", "--target-dir", vault.work + "/unused", "--set", "database.shop=shop_copy",
                      "--set", "restore_connections=2")
        for table in ["big", "big2"] {
            let sum = "SELECT COUNT(*), SUM(CRC32(CONCAT(id, txt, HEX(rnd)))) FROM \(table)"
            XCTAssertEqual(try vault.server.sql(sum, database: "shop_copy"), try vault.server.sql(sum, database: "shop"))
        }
    }

    /// SQL for `bytes` incompressible bytes made from `seq`: SHA-512 of the row number under
    /// a few salts. The same every run, unlike RANDOM_BYTES: where a dump's cuts fall depends
    /// on the rows' CRCs, and a test of them should not pass or fail with the draw.
    private func noise(_ bytes: Int, _ salt: String) -> String {
        let hashes = (0 ..< (bytes + 63) / 64).map { "SHA2(CONCAT('\(salt)', \($0), ':', seq), 512)" }
        return "LEFT(UNHEX(CONCAT(\(hashes.joined(separator: ", ")))), \(bytes))"
    }

    /// The server's binlog file and end position now.
    private func binlogEnd(_ server: MariaDBServer) throws -> (file: String, position: String) {
        let row = try server.sql("SHOW MASTER STATUS").split(separator: "\n").first?.split(separator: "\t") ?? []
        guard row.count >= 2 else { throw FixtureError("SHOW MASTER STATUS: no binlog") }
        return (String(row[0]), String(row[1]))
    }

    /// Rows inserted into tables of `database` by the binlog events after `mark`.
    private func rowsLogged(_ server: MariaDBServer, into database: String, since mark: (file: String, position: String)) throws -> Int {
        let out = NSTemporaryDirectory() + "coffer-binlog-" + UUID().uuidString
        defer { unlink(out) }
        try FixtureProcess.run("/usr/bin/mariadb-binlog", ["--base64-output=decode-rows", "--verbose", "--start-position=\(mark.position)",
                                                           "--result-file=\(out)", server.dataDirectory + "/" + mark.file])
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: out)), as: UTF8.self)
        return text.components(separatedBy: "### INSERT INTO `\(database)`.").count - 1
    }

    /// A table altered while the dump runs (after the snapshot was fixed, before its rows
    /// were read) fails the dump, naming the table; no backup is recorded.
    func testDDLDuringTheDumpFailsNamingTheTable() throws {
        let vault = try MariaDBVault(extraSourceOptions: "")
        try vault.server.sql("CREATE DATABASE shop")
        for t in ["a_big1", "a_big2", "a_big3"] {
            try vault.server.sql("""
                CREATE TABLE \(t) (id INT PRIMARY KEY, pad VARCHAR(255));
                INSERT INTO \(t) SELECT seq, REPEAT(SHA2(seq, 256), 3) FROM seq_1_to_250000;
                """, database: "shop")
        }
        try vault.server.sql("CREATE TABLE z_small (id INT PRIMARY KEY); INSERT INTO z_small VALUES (1), (2)", database: "shop")
        let dump = Process()
        dump.executableURL = URL(fileURLWithPath: MariaDBVault.coffer)
        dump.arguments = ["backup", "--source", "logi", "--config", vault.config]
        let errors = Pipe()
        dump.standardError = errors
        dump.standardOutput = FileHandle.nullDevice
        try dump.run()
        // Once a connection reads rows, the snapshot and schema are fixed: alter the table
        // read last, which no connection has reached yet.
        let deadline = Date().addingTimeInterval(60)
        while try vault.server.value("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT /* coffer dump */%'") == "0" {
            guard dump.isRunning, Date() < deadline else { break }
            usleep(5_000)
        }
        try vault.server.sql("ALTER TABLE z_small ADD COLUMN added INT NOT NULL DEFAULT 7", database: "shop")
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        dump.waitUntilExit()
        XCTAssertNotEqual(dump.terminationStatus, 0, "the dump must not succeed: \(stderr)")
        XCTAssertTrue(stderr.contains("table shop.z_small was changed (DDL) during the dump"), stderr)
        let listed = try JSONSerialization.jsonObject(with: Data(try vault.run("backups", "--source", "logi", "--json").utf8)) as? [Any]
        XCTAssertEqual(listed?.count, 0, "no backup recorded")
    }
}
