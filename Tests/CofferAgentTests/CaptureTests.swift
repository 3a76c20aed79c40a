import CofferAgent
import CofferFixtures
import CofferPluginProtocol
import CofferVault
import Foundation
import XCTest

/// The capture protocol (plugin-protocol.md) end to end, with the fault plugin's numbered
/// logs: log N is 10,000 bytes generated from seed N.
final class CaptureTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "coffer-capture-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "pass\n".write(toFile: "\(dir)/pass", atomically: true, encoding: .utf8)
        try """
        [vault]
        path = "\(dir)/vault"
        passphrase_file = "\(dir)/pass"

        [source.log]
        engine = "fault"
        logs = 3
        plugin_timeout = 20

        [source.quiet]
        engine = "fault"
        quiet_ms = 3500
        plugin_timeout = 2

        [source.failing]
        engine = "fault"
        fail_at = 2
        """.write(toFile: "\(dir)/coffer.toml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try coffer(["vault", "init"]).status, 0)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    var products: String { BuildProducts.directory(containing: "coffer") }
    var environment: [String: String] { ["COFFER_CONFIG": "\(dir)/coffer.toml", "COFFER_PLUGIN_PATH": products, "PATH": "/usr/bin:/bin"] }

    func coffer(_ args: [String]) throws -> (status: Int32, out: String, err: String, bytes: Data) {
        try runCoffer(args, environment: environment)
    }

    struct Line: Decodable, Equatable { let log: String; let backup: String; let size: Int64 }

    func lines(_ out: String) throws -> [Line] {
        try out.split(separator: "\n").map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
    }

    func expectStored(_ line: Line, seq: Int) throws {
        XCTAssertEqual(line.log, String(format: "log-%06d", seq))
        let got = try coffer(["get", line.backup, "log"])
        XCTAssertEqual(got.status, 0, got.err)
        var bytes = TestBytes(seed: UInt64(seq))
        XCTAssertEqual(Array(got.bytes), bytes.bytes(10000), "log \(seq) restores byte for byte")
    }

    func openVault() throws -> Vault {
        try Vault.open(backend: LocalBackend(path: dir + "/vault"), secret: .passphrase(Array("pass".utf8)))
    }

    func testOnceStoresEveryLogAndTheNextRunResumesAfterTheLast() throws {
        let first = try coffer(["capture", "--source", "log", "--once", "--json"])
        XCTAssertEqual(first.status, 0, first.err)
        let firstLogs = try lines(first.out)
        XCTAssertEqual(firstLogs.count, 3)
        for (i, line) in firstLogs.enumerated() { try expectStored(line, seq: i + 1) }

        let second = try coffer(["capture", "--source", "log", "--once", "--json"])
        XCTAssertEqual(second.status, 0, second.err)
        XCTAssertEqual(try lines(second.out).map(\.log), ["log-000004", "log-000005", "log-000006"])

        // An on-demand log backup of a capturing engine is a capture that stops when done.
        let backup = try coffer(["backup", "--source", "log", "--type", "log", "--json"])
        XCTAssertEqual(backup.status, 0, backup.err)
        struct Out: Decodable { let kind: String; let logs: [Line] }
        let out = try JSONDecoder().decode(Out.self, from: backup.bytes)
        XCTAssertEqual(out.logs.map(\.log), ["log-000007", "log-000008", "log-000009"])
        try expectStored(out.logs[2], seq: 9)

        let vault = try openVault()
        for seq in 1...9 {
            XCTAssertNotNil(try vault.logManifest(source: "log", log: String(format: "log-%06d", seq)), "log \(seq) has its reference")
        }
        XCTAssertEqual(try coffer(["vault", "check", "--read-data"]).status, 0)
    }

    func testFollowingCaptureStopsCleanlyOnSIGTERMAndLosesNothing() throws {
        let (process, output) = try startCapture(source: "log")
        let printed = try readLines(output, until: { $0.count >= 5 })
        kill(process.processIdentifier, SIGTERM)
        let rest = output.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "SIGTERM is how a capture is stopped")
        let all = printed + (try lines(String(decoding: rest, as: UTF8.self)))

        // Every log it reported is stored, and the logs stored are exactly 1...n: nothing
        // skipped, nothing half-recorded.
        let vault = try openVault()
        let stored = try vault.backups(source: "log").compactMap { $0.manifest.positions["seq"].flatMap { Int($0) } }.sorted()
        XCTAssertEqual(stored, Array(1...all.count))
        for (i, line) in all.enumerated() { try expectStored(line, seq: i + 1) }

        let next = try coffer(["capture", "--source", "log", "--once", "--json"])
        XCTAssertEqual(next.status, 0, next.err)
        XCTAssertEqual(try lines(next.out).first?.log, String(format: "log-%06d", all.count + 1))
        XCTAssertEqual(try coffer(["vault", "check", "--read-data"]).status, 0)
    }

    func testQuietPluginThatSaysAliveOutlivesTheTimeout() throws {
        // plugin_timeout is 2 s; the plugin says nothing but `alive` for 3.5 s after its
        // first log, so a second log proves the keepalive reset the timeout.
        let (process, output) = try startCapture(source: "quiet")
        let printed = try readLines(output, until: { $0.count >= 2 })
        kill(process.processIdentifier, SIGTERM)
        _ = output.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(printed.map(\.log), ["log-000001", "log-000002"])
        XCTAssertEqual(process.terminationStatus, 0)
    }

    func testFailingPluginKeepsWhatWasCommittedAndExitsTwenty() throws {
        let run = try coffer(["capture", "--source", "failing", "--once", "--json"])
        XCTAssertEqual(run.status, 20, run.err)
        XCTAssertTrue(run.err.contains("injected failure"), run.err)
        XCTAssertEqual(try lines(run.out).map(\.log), ["log-000001"])
        XCTAssertEqual(try openVault().backups(source: "failing").count, 1, "only the log committed before the failure")
    }

    func testResentLogIsTheSameBackupAndAlteredOneIsRefused() throws {
        XCTAssertEqual(try coffer(["capture", "--source", "log", "--once"]).status, 0)
        let vault = try openVault()
        let before = try vault.backups(source: "log")
        XCTAssertEqual(before.count, 3)
        // Resuming from log 1 (a plugin restarted before it heard of 2 and 3) sends them again.
        let log1 = before.first { $0.manifest.positions["seq"] == "1" }!
        let last = BackupDescription(id: log1.id, kind: "log", positions: log1.manifest.positions, metadata: [:], artifacts: [])
        var again: [String] = []
        let end = try job(vault).capture(CaptureRequest(source: "log", options: ["logs": "2"], follow: false, last: last)) {
            again.append($0.id)
        }
        XCTAssertEqual(end, .finished)
        XCTAssertEqual(Set(again), Set(before.filter { $0.manifest.positions["seq"] != "1" }.map(\.id)))
        XCTAssertEqual(try vault.backups(source: "log").count, 3)

        XCTAssertThrowsError(try job(vault).capture(
            CaptureRequest(source: "log", options: ["logs": "2", "altered": "3"], follow: false, last: last)) { _ in }
        ) { error in
            guard case AgentError.logConflict(_, let log, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(log, "log-000003")
        }
        XCTAssertEqual(try vault.backups(source: "log").count, 3)
    }

    // MARK: helpers

    func job(_ vault: Vault) throws -> PluginJob {
        let path = try PluginLocator.find(engine: "fault", environment: ["COFFER_PLUGIN_PATH": products])
        return PluginJob(vault: vault, plugin: try PluginProcess(path: path, timeout: 20), engine: "fault")
    }

    func startCapture(source: String) throws -> (Process, FileHandle) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "\(products)/coffer")
        p.arguments = ["capture", "--source", source, "--json"]
        p.environment = environment
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        return (p, out.fileHandleForReading)
    }

    /// Reads whole lines until `until` holds, or fails after 30 s or at the end of output.
    func readLines(_ handle: FileHandle, until: ([Line]) -> Bool) throws -> [Line] {
        var buffer = Data(), got: [Line] = []
        let deadline = Date().addingTimeInterval(30)
        while !until(got) {
            guard Date() < deadline else { XCTFail("timed out with \(got.count) lines"); break }
            let chunk = handle.availableData
            guard !chunk.isEmpty else { XCTFail("output ended after \(got.count) lines"); break }
            buffer += chunk
            while let nl = buffer.firstIndex(of: 0x0A) {
                got.append(try JSONDecoder().decode(Line.self, from: buffer[buffer.startIndex..<nl]))
                buffer = Data(buffer[(nl + 1)...])
            }
        }
        return got
    }
}
