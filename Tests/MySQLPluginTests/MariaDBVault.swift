import CofferFixtures
import Foundation
import XCTest

/// A real MariaDB 10.11 (binlog on, ROW, GTIDs) and a fresh vault with two sources on it:
/// `phys` (mariabackup) and `logi` (the parallel dump), driven through the real coffer CLI.
final class MariaDBVault {
    let work: String
    let config: String
    let server: MariaDBServer
    static var coffer: String { BuildProducts.directory(containing: "coffer") + "/coffer" }

    init(extraSourceOptions: String = "", dumpConnections: Int = 3) throws {
        work = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-mysqltest.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        config = work + "/coffer.toml"
        server = try MariaDBServer()
        try "test passphrase\n".write(toFile: work + "/passphrase", atomically: true, encoding: .utf8)
        try """
            [vault]
            path = "\(work)/vault"
            passphrase_file = "\(work)/passphrase"

            [source.phys]
            engine = "mysql"
            socket = "\(server.socket)"
            user = "root"
            defaults_file = "\(server.defaultsFile)"
            method = "physical"
            \(extraSourceOptions)

            [source.logi]
            engine = "mysql"
            socket = "\(server.socket)"
            user = "root"
            method = "logical"
            dump_connections = "\(dumpConnections)"
            \(extraSourceOptions)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        try run("vault", "init")
    }

    deinit { try? FileManager.default.removeItem(atPath: work) }

    func coffer(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try FixtureProcess.capture(MariaDBVault.coffer, args + ["--config", config])
    }

    @discardableResult
    func run(_ args: String...) throws -> String { try run(args) }

    @discardableResult
    func run(_ args: [String]) throws -> String {
        let r = try coffer(args)
        guard r.status == 0 else { throw FixtureError("coffer \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
        return r.stdout
    }

    /// `coffer backup --json`, decoded: the id and positions.
    func backup(_ source: String, type: String = "full") throws -> (id: String, positions: [String: String]) {
        let out = try run("backup", "--source", source, "--type", type, "--json")
        struct Out: Decodable { let id: String; let positions: [String: String] }
        let o = try JSONDecoder().decode(Out.self, from: Data(out.utf8))
        return (o.id, o.positions)
    }

    /// Bytes of all the vault's files: what backups stored.
    func vaultSize() throws -> Int {
        let path = work + "/vault"
        var total = 0
        let enumerator = FileManager.default.enumerator(atPath: path)
        while let name = enumerator?.nextObject() as? String {
            let attributes = try FileManager.default.attributesOfItem(atPath: path + "/" + name)
            if attributes[.type] as? FileAttributeType == .typeRegular { total += (attributes[.size] as? Int) ?? 0 }
        }
        return total
    }

    /// A ledger table in database `shop`, one row per transaction from the load.
    func createLedger() throws {
        try server.sql("CREATE DATABASE shop")
        try server.sql("CREATE TABLE ledger (id INT PRIMARY KEY, note VARCHAR(200) NOT NULL, blob_col BLOB) ENGINE=InnoDB", database: "shop")
    }

    /// The ledger as "id|note|hex(blob)" lines, in id order.
    static func ledger(_ server: MariaDBServer, database: String = "shop") throws -> [String] {
        try server.sql("SELECT CONCAT(id, '|', note, '|', COALESCE(HEX(blob_col), 'NULL')) FROM ledger ORDER BY id", database: database)
            .split(separator: "\n").map(String.init)
    }

    /// The ledger ids inserted by the binlog events up to `file`:`position` (exclusive of
    /// events starting at or after it), read from the server's own binlog files with
    /// mariadb-binlog: the rows committed at that position.
    static func idsCommitted(_ server: MariaDBServer, upTo file: String, position: UInt64) throws -> [Int] {
        let index = try String(contentsOfFile: server.dataDirectory + "/mariadb-bin.index", encoding: .utf8)
            .split(separator: "\n").map { String($0.split(separator: "/").last!) }
        guard let last = index.firstIndex(of: file) else { throw FixtureError("\(file) is not in the binlog index \(index)") }
        var ids: [Int] = []
        for (i, name) in index[...last].enumerated() {
            var args = ["--base64-output=decode-rows", "--verbose"]
            if i == last { args.append("--stop-position=\(position)") }
            // Through a file and decoded leniently: the rows' blobs print as raw bytes.
            let out = NSTemporaryDirectory() + "coffer-binlog-" + UUID().uuidString
            defer { unlink(out) }
            try FixtureProcess.run("/usr/bin/mariadb-binlog", args + ["--result-file=\(out)", server.dataDirectory + "/" + name])
            let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: out)), as: UTF8.self)
            var inLedgerInsert = false
            for line in text.split(separator: "\n") {
                if line.hasPrefix("### INSERT INTO `shop`.`ledger`") { inLedgerInsert = true; continue }
                if inLedgerInsert, line.hasPrefix("###   @1=") {
                    ids.append(Int(line.dropFirst("###   @1=".count))!)
                    inLedgerInsert = false
                }
            }
        }
        return ids.sorted()
    }
}

/// Fails unless two row lists are equal, naming the counts and the first difference
/// (not the whole lists, which run to thousands of rows).
func assertSameRows<T: Equatable>(_ got: [T], _ expected: [T], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard got != expected else { return }
    let i = (0..<min(got.count, expected.count)).first { got[$0] != expected[$0] } ?? min(got.count, expected.count)
    XCTFail("\(what): \(got.count) rows, expected \(expected.count); first difference at \(i): "
            + "\(i < got.count ? "\(got[i])" : "-") vs \(i < expected.count ? "\(expected[i])" : "-")", file: file, line: line)
}

/// Inserts ledger rows one transaction each (autocommit) from a mariadb client process,
/// until stopped: the write load a backup runs under.
final class LedgerLoad {
    let process = Process()
    let server: MariaDBServer
    let errorPath: String
    let scriptPath: String

    /// Statements sent one by one by the client, as an application would: a compound
    /// statement looping in the server was seen to stall mariabackup's BACKUP STAGE.
    init(_ server: MariaDBServer, from first: Int, count: Int) throws {
        let script = NSTemporaryDirectory() + "coffer-load-" + UUID().uuidString + ".sql"
        var text = ""
        text.reserveCapacity(count * 120)
        for i in first..<(first + count) {
            let note = "row \(i) " + String(repeating: Character(UnicodeScalar(UInt8(65 + i % 26))), count: i % 150)
            let blob = i % 3 == 0 ? "NULL" : "UNHEX(SHA2(\(i), 256))"
            text += "INSERT INTO ledger VALUES (\(i), '\(note)', \(blob));\n"
        }
        try text.write(toFile: script, atomically: false, encoding: .utf8)
        scriptPath = script
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mariadb")
        process.arguments = ["--defaults-file=\(server.defaultsFile)", "shop"]
        process.standardInput = FileHandle(forReadingAtPath: script)
        process.standardOutput = FileHandle.nullDevice
        errorPath = NSTemporaryDirectory() + "coffer-load-" + UUID().uuidString
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
        self.server = server
    }

    /// Waits until at least `n` rows exist (a real condition, with a deadline).
    func waitForRows(_ n: Int) throws {
        let deadline = Date().addingTimeInterval(120)
        while Int(try server.value("SELECT COUNT(*) FROM ledger", database: "shop")) ?? 0 < n {
            if !process.isRunning {
                let why = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
                throw FixtureError("the load stopped before \(n) rows: \(why)")
            }
            if Date() > deadline { throw FixtureError("the load did not reach \(n) rows in 120 s") }
            usleep(20_000)
        }
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        unlink(errorPath)
        unlink(scriptPath)
    }
}
