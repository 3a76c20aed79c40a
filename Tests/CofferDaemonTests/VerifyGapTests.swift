import CofferAgent
@testable import CofferDaemon
import CofferFixtures
import Foundation
import XCTest

/// Scheduled verification of a real PostgreSQL archive with a segment lost from the vault:
/// the agent runs `coffer verify` on the hour, sees exit 23 and alerts `verify_gap` naming it.
final class VerifyGapTests: XCTestCase {
    func date(_ iso: String) -> Date { ISO8601DateFormatter().date(from: iso)! }

    func testScheduledVerifyAlertsTheGap() async throws {
        let coffer = AgentScratch.coffer
        let work = try PostgresServer.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let config = work + "/coffer.toml"
        let server = try PostgresServer(settings: [
            "archive_mode": "on",
            "archive_command": "'\(coffer) wal-push --config \(config) %p'",
        ])
        defer { try? server.stop() }
        let receiver = AlertReceiver()
        try await receiver.start()
        try "test passphrase\n".write(toFile: work + "/passphrase", atomically: true, encoding: .utf8)
        try """
            [vault]
            path = "\(work)/vault"
            passphrase_file = "\(work)/passphrase"

            [agent]
            listen = ""
            state_dir = "\(work)/state"
            catch_up = false
            time_zone = "UTC"
            webhooks = ["\(receiver.url)"]

            [source.main]
            engine = "postgres"
            connection = "\(server.conninfo)"
            data_directory = "\(server.dataDirectory)"
            [source.main.schedule]
            verify = "0 * * * *"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        // As archive_command runs it: the postgres OS user (when we are root).
        func run(_ args: String...) throws -> String {
            let argv = [coffer] + args + ["--config", config]
            let r = getuid() == 0 ? try FixtureProcess.capture("/usr/sbin/runuser", ["-u", "postgres", "--"] + argv)
                                  : try FixtureProcess.capture(argv[0], Array(argv.dropFirst()))
            guard r.status == 0 else { throw FixtureError("coffer \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
            return r.stdout
        }
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["postgres:postgres", config, work + "/passphrase"]) }
        _ = try run("vault", "init")
        func archiveAll() throws {
            let segment = try server.sql("SELECT pg_walfile_name(pg_switch_wal())").trimmingCharacters(in: .whitespacesAndNewlines)
            let deadline = Date().addingTimeInterval(120)
            while try server.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
                .trimmingCharacters(in: .whitespacesAndNewlines) < segment {
                guard Date() < deadline else { throw FixtureError("\(segment) not archived in 120 s:\n\(server.log.suffix(2000))") }
                usleep(50_000)
            }
        }
        try server.sql("CREATE TABLE ledger (id int PRIMARY KEY)")
        _ = try run("backup", "--source", "main")
        try server.sql("INSERT INTO ledger SELECT generate_series(1, 100)")
        try archiveAll()
        let lost = try server.sql("SELECT pg_walfile_name(pg_current_wal_lsn() + 1)").trimmingCharacters(in: .whitespacesAndNewlines)
        try server.sql("INSERT INTO ledger SELECT generate_series(101, 200)")
        try archiveAll()
        try server.sql("INSERT INTO ledger SELECT generate_series(201, 300)")
        try archiveAll()
        // Lose one segment's manifest from the vault.
        let listing = try run("backups", "--source", "main", "--logs", "--json")
        let entries = try JSONSerialization.jsonObject(with: Data(listing.utf8)) as! [[String: Any]]
        let entry = try XCTUnwrap(entries.first { ($0["positions"] as? [String: String])?["log"] == lost }, "\(lost) in \(listing)")
        try FileManager.default.removeItem(atPath: work + "/vault/manifests/" + (entry["id"] as! String))

        let clock = ManualClock(date("2026-11-26T09:59:00Z"))
        let agent = try Agent(config: CofferConfig.load(path: config),
                              options: .init(configPath: config, coffer: coffer,
                                             environment: ["PATH": "/usr/bin:/bin", "COFFER_PLUGIN_PATH": AgentScratch.products]),
                              clock: clock)
        let loop = Task { await agent.run() }
        clock.advance(to: date("2026-11-26T10:00:00Z"))
        try await eventually("the verify_gap alert", within: 120) { receiver.alerts.count == 1 }
        let alert = receiver.alerts[0]
        XCTAssertEqual(alert["type"] as? String, "verify_gap")
        XCTAssertEqual(alert["source"] as? String, "main")
        XCTAssertEqual(alert["exitCode"] as? Int, 23)
        let problems = alert["problems"] as? [[String: String]] ?? []
        XCTAssertTrue(problems.contains { ($0["detail"] ?? "").contains(lost) || $0["log"] == lost }, "\(lost) in \(problems)")
        let verify = await agent.status().jobs.first { $0.id == "main/verify" }!
        XCTAssertEqual(verify.lastResult, "gap")
        XCTAssertNil(verify.retryAt, "a gap is not retried")
        XCTAssertEqual(verify.runs, 1)
        await agent.shutdown()
        await loop.value
        await receiver.stop()
    }
}
