import CofferFixtures
import Foundation
import XCTest

/// Archiving through `coffer wal-push`, `coffer verify` and point-in-time restores through
/// `coffer restore --start`, against real PostgreSQL 15 servers. Every restored server is
/// compared row for row with what the source had committed at the target.
final class PointInTimeTests: XCTestCase {
    func testRestoresToTimeLSNXidNameAndLatestHoldExactlyWhatWasCommitted() throws {
        let cluster = try ArchivingCluster.withBackedUpLedger()
        let source = cluster.server
        try ArchivingCluster.commitRows(source, 1...200)
        try source.sql("SELECT pg_create_restore_point('after-200')")
        try ArchivingCluster.commitRows(source, 201...260, gapMillis: 0)
        try cluster.archiveAll()

        let verify = try cluster.coffer(["verify", "--source", "main", "--json"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("\"stream\" : \"timeline 1\""), verify.stdout)

        // Between two commits 2 ms apart: everything up to the first, nothing of the second.
        let between = try ArchivingCluster.timeBetween(source, 120, 121)
        try check(cluster, "time", ["--to-time", between], expected: "pg_xact_commit_timestamp(xmin) <= '\(between)'", count: 120)

        // Exactly a commit's time: recovery targets are inclusive.
        let exact = try ArchivingCluster.value(source, "SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' FROM ledger WHERE id = 90")
        try check(cluster, "exact", ["--to-time", exact], expected: "pg_xact_commit_timestamp(xmin) <= '\(exact)'", count: 90)

        // The WAL position noted before row 151 was inserted: rows 1-150 are before it.
        let lsn = try ArchivingCluster.value(source, "SELECT substr(note, 8) FROM ledger WHERE id = 151")
        try check(cluster, "lsn", ["--to-lsn", lsn], expected: "id <= 150", count: 150)

        let xid = try ArchivingCluster.value(source, "SELECT xmin FROM ledger WHERE id = 160")
        try check(cluster, "xid", ["--to-xid", xid], expected: "id <= 160", count: 160)

        try check(cluster, "name", ["--to-name", "after-200"], expected: "id <= 200", count: 200)
        // Each restore above promoted to a new timeline and archives into the same vault, as
        // a restored server does; the latest point of timeline 1 is the original's.
        try check(cluster, "latest", ["--timeline", "1"], expected: "true", count: 260)

        // --delta over an earlier restore (its server stopped): only what differs is rewritten,
        // what the backup lacks (the promoted server's new WAL, its log) goes.
        let (delta, _) = try cluster.restore("time", ["--to-name", "after-200", "--timeline", "1", "--delta"])
        XCTAssertEqual(try ArchivingCluster.rows(delta), try ArchivingCluster.rows(source, where: "id <= 200"))
        try delta.stop()

        // Before the base backup was consistent: refused, and the window is stated.
        let early = try cluster.coffer(["restore", "--source", "main", "--target-dir", cluster.work + "/early",
                                        "--to-time", "2001-01-01 00:00:00+00"])
        XCTAssertEqual(early.status, 22, early.stderr)
        XCTAssertTrue(early.stderr.contains("outside the restorable window") && early.stderr.contains(" from "), early.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cluster.work + "/early/PG_VERSION"))

        // A non-empty target is refused unless told; --force replaces it.
        let busy = try cluster.coffer(["restore", "--source", "main", "--target-dir", cluster.work + "/latest"])
        XCTAssertNotEqual(busy.status, 0)
        XCTAssertTrue(busy.stderr.contains("is not empty"), busy.stderr)
    }

    /// Restores to `args`, starts the server and compares its ledger with the source's rows
    /// matching `expected` (which must be `count` rows: the comparison cannot be vacuous).
    private func check(_ cluster: ArchivingCluster, _ name: String, _ args: [String], expected: String, count: Int,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let want = try ArchivingCluster.rows(cluster.server, where: expected)
        XCTAssertEqual(want.count, count, "the source's expectation for \(name)", file: file, line: line)
        let (restored, output) = try cluster.restore(name, args)
        let got = try ArchivingCluster.rows(restored)
        XCTAssertEqual(got, want, "\(name): restored rows differ from what was committed at \(args)\n\(output)", file: file, line: line)
        XCTAssertEqual(try ArchivingCluster.value(restored, "SELECT pg_is_in_recovery()"), "f", "\(name): the restored server was promoted")
        try restored.stop()
    }

    /// Restore to a time on timeline 1 and promote (timeline 2), write more there (archived
    /// on timeline 2 by the restored server into the same vault), then restore to a time on
    /// timeline 2 and to a time on timeline 1 after the switch.
    func testTimelines() throws {
        let cluster = try ArchivingCluster.withBackedUpLedger()
        let source = cluster.server
        try ArchivingCluster.commitRows(source, 1...60)
        try cluster.archiveAll()
        let switchTime = try ArchivingCluster.timeBetween(source, 40, 41)
        try ArchivingCluster.commitRows(source, 61...100)
        try cluster.archiveAll()

        let (branch, _) = try cluster.restore("branch", ["--to-time", switchTime])
        XCTAssertEqual(try ArchivingCluster.rows(branch).count, 40)
        XCTAssertEqual(try ArchivingCluster.value(branch, "SELECT timeline_id FROM pg_control_checkpoint()"), "2")
        try ArchivingCluster.commitRows(branch, 1001...1030)
        try cluster.archiveAll(on: branch)
        let onTwo = try ArchivingCluster.timeBetween(branch, 1020, 1021)
        let wantTwo = try ArchivingCluster.rows(branch, where: "pg_xact_commit_timestamp(xmin) <= '\(onTwo)'")
        XCTAssertEqual(wantTwo.count, 60)

        let verify = try cluster.coffer(["verify", "--source", "main"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("restorable on timeline 2"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("restorable on timeline 1"), verify.stdout)

        let (two, _) = try cluster.restore("on-two", ["--to-time", onTwo, "--timeline", "2"])
        XCTAssertEqual(try ArchivingCluster.rows(two), wantTwo)
        try two.stop()

        // Timeline 1 went on after the switch on the original server.
        let onOne = try ArchivingCluster.timeBetween(source, 80, 81)
        let (one, _) = try cluster.restore("on-one", ["--to-time", onOne, "--timeline", "1"])
        XCTAssertEqual(try ArchivingCluster.rows(one), try ArchivingCluster.rows(source, where: "id <= 80"))
        try one.stop()
        try branch.stop()
    }

    /// A segment lost from the vault: verify names it and fails, a restore past it is refused
    /// with the window, a restore before it works.
    func testDeletedSegmentIsNamedAndBoundsTheWindow() throws {
        let cluster = try ArchivingCluster.withBackedUpLedger()
        let source = cluster.server
        try ArchivingCluster.commitRows(source, 1...30, gapMillis: 1)
        try cluster.archiveAll()
        // The segment after the switch: where rows 31-60 go.
        let lost = try ArchivingCluster.value(source, "SELECT pg_walfile_name(pg_current_wal_lsn() + 1)")
        try ArchivingCluster.commitRows(source, 31...60, gapMillis: 1)
        try cluster.archiveAll()
        try ArchivingCluster.commitRows(source, 61...90, gapMillis: 1)
        try cluster.archiveAll()

        // Remove the manifest of the segment (what a lost or deleted object looks like).
        let listing = try cluster.run("backups", "--source", "main", "--logs", "--json")
        let entries = try JSONSerialization.jsonObject(with: Data(listing.utf8)) as! [[String: Any]]
        let entry = try XCTUnwrap(entries.first { ($0["positions"] as? [String: String])?["log"] == lost }, "\(lost) in \(listing)")
        try FileManager.default.removeItem(atPath: cluster.work + "/vault/manifests/" + (entry["id"] as! String))

        let verify = try cluster.coffer(["verify", "--source", "main"])
        XCTAssertEqual(verify.status, 23, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("MISSING") && verify.stdout.contains(lost), verify.stdout)

        let past = try ArchivingCluster.timeBetween(source, 75, 76)
        let refused = try cluster.coffer(["restore", "--source", "main", "--target-dir", cluster.work + "/past", "--to-time", past])
        XCTAssertEqual(refused.status, 22, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("outside the restorable window"), refused.stderr)

        let before = try ArchivingCluster.timeBetween(source, 20, 21)
        let (restored, _) = try cluster.restore("before", ["--to-time", before])
        XCTAssertEqual(try ArchivingCluster.rows(restored), try ArchivingCluster.rows(source, where: "id <= 20"))
        try restored.stop()
    }

    /// archive_command's contract: the same file twice succeeds, other content under the
    /// same name fails loudly and changes nothing.
    func testWalPushIsIdempotentAndRefusesConflicts() throws {
        let cluster = try ArchivingCluster()
        try cluster.archiveAll()
        let segment = try ArchivingCluster.value(cluster.server, "SELECT last_archived_wal FROM pg_stat_archiver")
        let copy = cluster.work + "/" + segment
        try FileManager.default.copyItem(atPath: cluster.server.dataDirectory + "/pg_wal/" + segment, toPath: copy)
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["-R", "postgres:postgres", cluster.work]) }
        let again = try cluster.coffer(["wal-push", copy])
        XCTAssertEqual(again.status, 0, again.stderr)

        let history = cluster.work + "/00000005.history"
        try "4\t0/5000000\tno recovery target specified\n".write(toFile: history, atomically: true, encoding: .utf8)
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["-R", "postgres:postgres", cluster.work]) }
        XCTAssertEqual(try cluster.coffer(["wal-push", history]).status, 0)
        XCTAssertEqual(try cluster.coffer(["wal-push", history]).status, 0)
        try "4\t0/6000000\tno recovery target specified\n".write(toFile: history, atomically: true, encoding: .utf8)
        let conflict = try cluster.coffer(["wal-push", history])
        XCTAssertEqual(conflict.status, 21, conflict.stderr)
        XCTAssertTrue(conflict.stderr.contains("different content"), conflict.stderr)

        // The stored copy is the first one.
        let fetched = cluster.work + "/fetched.history"
        XCTAssertEqual(try cluster.coffer(["wal-fetch", "--prefetch", "0", "00000005.history", fetched]).status, 0)
        XCTAssertEqual(try String(contentsOfFile: fetched, encoding: .utf8), "4\t0/5000000\tno recovery target specified\n")
        XCTAssertEqual(try cluster.coffer(["wal-fetch", "00000009.history", cluster.work + "/none"]).status, 1)

        // A damaged segment is not archived.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: copy))
        bytes[9000] ^= 0xff
        let damaged = cluster.work + "/damaged/" + segment
        try FileManager.default.createDirectory(atPath: cluster.work + "/damaged", withIntermediateDirectories: true)
        try bytes.write(to: URL(fileURLWithPath: damaged))
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["-R", "postgres:postgres", cluster.work]) }
        let refused = try cluster.coffer(["wal-push", damaged])
        XCTAssertEqual(refused.status, 20, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("WAL segment \(segment)"), refused.stderr)
    }
}

/// A plugin killed in the middle of a base backup: the backup fails with the plugin named,
/// no backup is recorded, PostgreSQL is not left in backup mode, and the next backup works.
final class KilledBackupTests: XCTestCase {
    func testPluginKilledMidBackupLeavesNoBackupAndTheNextOneWorks() throws {
        try killMidBackup(remote: false)
    }

    /// The same in remote mode: the server's BASE_BACKUP loses its connection midway.
    func testRemotePluginKilledMidBackupLeavesNoBackupAndTheNextOneWorks() throws {
        try killMidBackup(remote: true)
    }

    private func killMidBackup(remote: Bool) throws {
        let cluster = try ArchivingCluster(remote: remote)
        try cluster.server.sql("""
            CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL);
            INSERT INTO ledger SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 1500000) g;
            """)
        let backup = Process()
        backup.executableURL = URL(fileURLWithPath: getuid() == 0 ? "/usr/sbin/runuser" : ArchivingCluster.coffer)
        backup.arguments = (getuid() == 0 ? ["-u", "postgres", "--", ArchivingCluster.coffer] : [])
            + ["backup", "--source", "main", "--config", cluster.config]
        let errors = Pipe()
        backup.standardError = errors
        backup.standardOutput = FileHandle.nullDevice
        try backup.run()

        // Wait (with a deadline) until the plugin runs and the first pack is in the vault.
        let deadline = Date().addingTimeInterval(120)
        var plugin: pid_t?
        while plugin == nil || packs(cluster) == 0 {
            XCTAssertLessThan(Date(), deadline, "the backup never got going")
            XCTAssertTrue(backup.isRunning, "the backup ended before it could be interrupted")
            if Date() > deadline || !backup.isRunning { return }
            plugin = pluginProcess()
            usleep(10_000)
        }
        kill(plugin!, SIGKILL)
        backup.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(backup.terminationStatus, 20, message)
        XCTAssertTrue(message.contains("coffer-postgres"), message)
        XCTAssertEqual(try cluster.run("backups", "--source", "main").contains("full"), false)
        // The server lets go of the backup: its session ends, and with it the temporary slot
        // that held back WAL (polled: the server notices the closed socket on its own time).
        let released = Date().addingTimeInterval(30)
        while try cluster.value(cluster.server, "SELECT count(*) FROM pg_replication_slots") != "0" {
            guard Date() < released else {
                let slots = try cluster.server.sql("""
                    SELECT s.slot_name || ' temporary=' || s.temporary || ' pid=' || coalesce(s.active_pid::text, '-')
                           || ' state=' || coalesce(a.state, '-') || ' wait=' || coalesce(a.wait_event, '-')
                           || ' query=' || coalesce(left(a.query, 80), '-')
                    FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
                    """)
                return XCTFail("the killed backup's replication slot is still there: \(slots)")
            }
            usleep(50_000)
        }

        try cluster.run("backup", "--source", "main")
        let listing = try cluster.run("backups", "--source", "main", "--json")
        let entries = try JSONSerialization.jsonObject(with: Data(listing.utf8)) as! [[String: Any]]
        XCTAssertEqual(entries.filter { $0["kind"] as? String == "full" }.count, 1)
        try cluster.archiveAll()
        let (restored, _) = try cluster.restore("after-kill", ["--timeline", "1"])
        XCTAssertEqual(try ArchivingCluster.value(restored, "SELECT count(*) FROM ledger"), "1500000")
        try restored.stop()
    }

    private func packs(_ cluster: ArchivingCluster) -> Int {
        let root = cluster.work + "/vault/packs"
        return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .reduce(0) { $0 + ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + $1))?.count ?? 0) }
    }

    /// The coffer-postgres serving `coffer backup` (not one started by archive_command's
    /// `coffer wal-push`), found by its and its parent's command lines.
    private func pluginProcess() -> pid_t? {
        func argv(_ pid: String) -> [String] {
            (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), argv(entry).first?.hasSuffix("/coffer-postgres") == true,
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let parent = stat.split(separator: ")").last?.split(separator: " ").dropFirst().first
            else { continue }
            if argv(String(parent)).contains("backup") { return pid }
        }
        return nil
    }
}
