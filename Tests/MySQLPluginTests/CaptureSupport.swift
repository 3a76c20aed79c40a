import CofferFixtures
import Foundation
import XCTest

/// A captured binlog slice as `coffer backups --logs --json` lists it.
struct CapturedSlice: Decodable {
    let id: String
    let kind: String
    let positions: [String: String]
    var file: String { positions["file"] ?? "" }
    var start: UInt64 { UInt64(positions["start"] ?? "") ?? 0 }
    var end: UInt64 { UInt64(positions["end"] ?? "") ?? 0 }
}

extension MariaDBVault {
    func slices(_ source: String = "phys") throws -> [CapturedSlice] {
        let out = try run("backups", "--source", source, "--logs", "--json")
        return try JSONDecoder().decode([CapturedSlice].self, from: Data(out.utf8)).filter { $0.kind == "log" }
            .sorted { ($0.file, $0.start) < ($1.file, $1.start) }
    }

    /// The bytes of `file` as the vault's slices put end to end, checking they abut.
    func assembled(_ file: String, source: String = "phys") throws -> [UInt8] {
        var bytes: [UInt8] = []
        for s in try slices(source) where s.file == file {
            XCTAssertEqual(s.start, UInt64(bytes.count), "slice \(s.positions["log"] ?? "") starts where the one before ends")
            let out = work + "/slice.out"
            try FixtureProcess.run("/bin/sh", ["-c", "'\(MariaDBVault.coffer)' get --config '\(config)' \(s.id) binlog > '\(out)'"])
            bytes += try Data(contentsOf: URL(fileURLWithPath: out))
        }
        return bytes
    }

    /// The server's copy of a binlog file, as a replica receives it: the active file has
    /// the "in use" flag set in its format description event's header (byte 21), which
    /// the server clears when it closes the file and does not send.
    func serverBinlog(_ file: String) throws -> [UInt8] {
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: server.dataDirectory + "/" + file)))
        if bytes.count > 21 { bytes[21] &= ~1 }
        return bytes
    }

    /// The server's binlog files, oldest first.
    var binlogFiles: [String] {
        get throws { try server.sql("SHOW BINARY LOGS").split(separator: "\n").map { String($0.split(separator: "\t")[0]) } }
    }

    /// Waits (polling the vault, with a deadline) until the capture has stored the server's
    /// binlog up to its current end.
    func waitUntilCaptured(source: String = "phys") throws {
        let status = try server.sql("SHOW MASTER STATUS").split(separator: "\t")
        let file = String(status[0]), end = UInt64(status[1])!
        let deadline = Date().addingTimeInterval(120)
        while true {
            if try slices(source).contains(where: { $0.file == file && $0.end >= end }) { return }
            if Date() > deadline {
                let log = (try? String(contentsOfFile: work + "/capture.err", encoding: .utf8)) ?? ""
                throw FixtureError("the capture did not store \(file) up to \(end) within 120 s; stored: \(try slices(source).map { $0.positions["log"] ?? "" }); capture log: \(log.suffix(2000))")
            }
            usleep(200_000)
        }
    }

    /// `coffer capture --source S` running until stopped.
    func startCapture(source: String = "phys") throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: MariaDBVault.coffer)
        p.arguments = ["capture", "--source", source, "--config", config]
        p.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: work + "/capture.err", contents: nil)
        let log = FileHandle(forWritingAtPath: work + "/capture.err")!
        log.seekToEndOfFile()
        p.standardError = log
        try p.run()
        return p
    }

    /// Inserts ledger rows `range`, one transaction each.
    func insert(_ range: ClosedRange<Int>) throws {
        // One compound statement: the client must not split it at its semicolons.
        try FixtureProcess.run("/usr/bin/mariadb", ["--defaults-file=\(server.defaultsFile)", "--delimiter=$$", "shop", "-e", """
            BEGIN NOT ATOMIC FOR i IN \(range.lowerBound)..\(range.upperBound) DO
              INSERT INTO ledger VALUES (i, CONCAT('row ', i), NULL); END FOR; END
            """])
    }
}
