import CofferFixtures
import CofferMongoDB
import Foundation
import XCTest

/// `coffer capture` of SecantusDB's oplog: following across a server restart, and a gap
/// when the oplog rolled over while capture was stopped.
final class MongoCaptureTests: XCTestCase {
    /// A capture follows the oplog while the server restarts; the slices stay contiguous
    /// (verify passes) and a restore to the latest point equals the source.
    func testCaptureFollowsAcrossAServerRestart() throws {
        let vault = try MongoVault(sourceOptions: ["capture_slice_seconds": "1"])
        let c = try vault.client()
        try c.command("shop", ["create": "ledger"])
        var w = Workload()
        for _ in 0..<30 { try w.next(c) }
        try vault.run("backup", "--source", "main")

        let capture = try BackgroundCoffer(vault, ["capture", "--source", "main", "--json"])
        defer { capture.stop() }
        for _ in 0..<30 { try w.next(c) }
        let beforeRestart = try newestTimestamp(c)
        try waitUntil("capture stored \(beforeRestart)") { capture.capturedThrough() >= beforeRestart }

        try vault.server.restart()
        let c2 = try vault.client()
        for _ in 0..<30 { try w.next(c2) }
        let afterRestart = try newestTimestamp(c2)
        XCTAssertGreaterThan(afterRestart, beforeRestart, "the oplog goes on after the restart")
        try waitUntil("capture stored \(afterRestart) after the restart", seconds: 120) { capture.capturedThrough() >= afterRestart }
        XCTAssertEqual(kill(capture.pid, 0), 0, "the same capture process went on")
        XCTAssertTrue(capture.stderr.contains("capture lost the server"), "it saw the restart: \(capture.stderr)")
        capture.stop()

        let verify = try vault.coffer(["verify", "--source", "main"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        let target = try SecantusServer()
        try vault.run("restore", "--source", "main", "--target-uri", target.uri)
        XCTAssertEqual(try documents(try MongoClient(uri: target.uri), "shop", "ledger"), try Workload.state(after: 90))
        XCTAssertEqual(try documents(c2, "shop", "ledger"), try Workload.state(after: 90))
    }

    /// With a small oplog (100 entries), writes while capture is stopped roll it past the
    /// last captured entry: the next capture fails naming the gap and stores nothing. Told to
    /// go on (capture_after_gap = continue) it captures from the oldest entry; verify then
    /// names the gap and exits non-zero, and a restore past the gap is refused.
    func testOplogRolledOverWhileStoppedIsAGap() throws {
        let vault = try MongoVault(serverFlags: ["--oplog-max-entries", "100"])
        let (c, written) = try vault.dumpedThenCaptured(after: 10)
        var w = written
        let captured = try XCTUnwrap(try vault.newestPositions(kind: "log")["last_ts"].flatMap(Timestamp.init))

        // SecantusDB prunes every 1000 writes down to the cap.
        for _ in 0..<1100 { try w.next(c) }
        try waitUntil("the oplog has rolled past \(captured)") { try Oplog.oldest(c).ts > captured }
        let logsBefore = try vault.run("backups", "--source", "main", "--logs", "--json")

        let failed = try vault.coffer(["capture", "--source", "main", "--once"])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.contains("gap in the oplog"), failed.stderr)
        XCTAssertTrue(failed.stderr.contains(captured.description), "names the last captured entry: \(failed.stderr)")
        XCTAssertEqual(try vault.run("backups", "--source", "main", "--logs", "--json"), logsBefore, "nothing stored")

        // Going on past the gap on purpose.
        var config = try String(contentsOfFile: vault.config, encoding: .utf8)
        config += "capture_after_gap = \"continue\"\n"
        try config.write(toFile: vault.config, atomically: true, encoding: .utf8)
        try vault.run("capture", "--source", "main", "--once")
        let verify = try vault.coffer(["verify", "--source", "main"])
        XCTAssertEqual(verify.status, 23, verify.stdout + verify.stderr)
        XCTAssertTrue((verify.stdout + verify.stderr).contains("after \(captured)"), verify.stdout + verify.stderr)

        let target = try SecantusServer()
        let pastGap = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri,
                                        "--to-timestamp", try newestTimestamp(c).description])
        XCTAssertEqual(pastGap.status, 22, pastGap.stderr)
        // Up to the gap is still restorable: exactly the state the first capture ended at.
        try vault.run("restore", "--source", "main", "--target-uri", target.uri, "--to-timestamp", captured.description)
        XCTAssertEqual(try documents(try MongoClient(uri: target.uri), "shop", "ledger"), try Workload.state(after: 30))
    }
}

/// `coffer ARGS` running in the background, its stdout in a file; stopped with SIGTERM.
final class BackgroundCoffer {
    let pid: pid_t
    let out: String
    private var stopped = false

    init(_ vault: MongoVault, _ args: [String]) throws {
        out = vault.work + "/capture-\(UUID().uuidString).out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, out + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let all = [MongoVault.coffer] + args + ["--config", vault.config]
        let argv: [UnsafeMutablePointer<CChar>?] = all.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var p: pid_t = 0
        let rc = posix_spawn(&p, all[0], &actions, nil, argv, environ)
        guard rc == 0 else { throw FixtureError("cannot start coffer: \(rc)") }
        pid = p
    }

    /// The newest last_ts among the logs the capture has reported stored.
    func capturedThrough() -> Timestamp {
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        var newest = Timestamp(t: 0, i: 0)
        for line in text.split(separator: "\n") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let p = obj["positions"] as? [String: String], let ts = p["last_ts"].flatMap(Timestamp.init) else { continue }
            newest = max(newest, ts)
        }
        return newest
    }

    var stderr: String { (try? String(contentsOfFile: out + ".err", encoding: .utf8)) ?? "" }

    func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}
