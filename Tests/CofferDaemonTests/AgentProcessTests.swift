@testable import CofferDaemon
import Foundation
import Synchronization
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The real `coffer agent` process: HTTP metrics and status, SIGTERM mid-backup, the lock.
final class AgentProcessTests: XCTestCase {
    /// A running `coffer agent`, its stderr collected.
    final class RunningAgent: @unchecked Sendable {
        let process = Process()
        private let errLines = Mutex<String>("")
        var log: String { errLines.withLock { $0 } }

        init(_ scratch: AgentScratch) throws {
            process.executableURL = URL(fileURLWithPath: AgentScratch.coffer)
            process.arguments = ["agent", "--config", scratch.configPath]
            process.environment = scratch.environment
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            err.fileHandleForReading.readabilityHandler = { [self] handle in
                let data = handle.availableData
                self.errLines.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
            try process.run()
        }

        func waitForExit(within seconds: Double) async throws -> Int32 {
            try await eventually("coffer agent to exit", within: seconds) { !self.process.isRunning }
            return process.terminationStatus
        }
    }

    func state(_ scratch: AgentScratch) throws -> AgentStatus? {
        try StateStore(directory: scratch.state).load()
    }

    func get(_ url: String) async throws -> (Int, String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// The value of a metric line `name{labels} value` in Prometheus text.
    func metric(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    func testMetricsAndStatusOverHTTPShowTheBackupJustRun() async throws {
        let scratch = try AgentScratch()
        // Yearly schedule: the only run is the catch-up at start.
        try scratch.writeConfig(agent: "listen = \"127.0.0.1:0\"\ntime_zone = \"UTC\"", """
        [source.db]
        engine = "fault"
        artifacts = "base:3000000:cdc,extra:123456:whole"
        seed = 9
        [source.db.schedule]
        full = "0 0 1 jan *"
        """)
        let agent = try RunningAgent(scratch)
        defer { if agent.process.isRunning { agent.process.terminate() } }
        try await eventually("the catch-up backup to succeed") {
            try self.state(scratch)?.jobs.first?.lastResult == "ok" && self.state(scratch)?.listen != nil
        }
        let status = try XCTUnwrap(state(scratch))
        let job = try XCTUnwrap(status.jobs.first)
        let backups = try scratch.backups(source: "db")
        XCTAssertEqual(backups.count, 1)
        let size = try XCTUnwrap(backups[0]["size"] as? Int)
        XCTAssertEqual(size, 3_123_456)
        XCTAssertEqual(job.lastBackup, backups[0]["id"] as? String)

        let (code, text) = try await get("http://\(status.listen!)/metrics")
        XCTAssertEqual(code, 200)
        let labels = #"{source="db",kind="full"}"#
        XCTAssertEqual(metric(text, "coffer_backup_bytes_read" + labels), Double(size), text)
        // The state file keeps milliseconds.
        XCTAssertEqual(try XCTUnwrap(metric(text, "coffer_job_last_success_timestamp_seconds" + labels), text),
                       job.lastSuccess!.timeIntervalSince1970, accuracy: 0.001)
        let stored = try XCTUnwrap(metric(text, "coffer_backup_bytes_stored" + labels), text)
        // Random data: the vault grew by about what was read (zstd cannot shrink it).
        XCTAssertGreaterThan(stored, Double(size))
        XCTAssertLessThan(stored, Double(size) * 1.1)
        XCTAssertEqual(metric(text, "coffer_backup_dedupe_ratio" + labels)!, Double(size) / stored, accuracy: 1e-9)
        XCTAssertEqual(metric(text, "coffer_job_last_duration_seconds" + labels), job.lastDuration, text)
        XCTAssertEqual(metric(text, #"coffer_job_runs_total{source="db",kind="full",result="ok"}"#), 1, text)
        XCTAssertEqual(metric(text, "coffer_job_running" + labels), 0, text)
        // The vault's size is what is on disk now.
        XCTAssertEqual(metric(text, "coffer_vault_size_bytes"), Double(Agent.directorySize(scratch.vault)), text)

        let (statusCode, body) = try await get("http://\(status.listen!)/status")
        XCTAssertEqual(statusCode, 200)
        let served = try AgentStatus.decoder.decode(AgentStatus.self, from: Data(body.utf8))
        XCTAssertEqual(served.jobs.first?.lastBackup, job.lastBackup)
        XCTAssertEqual(served.jobs.first?.bytesStored, Int64(stored))

        // coffer status: the same, from the state file, and it knows the agent runs.
        let json = try scratch.run(["status", "--config", scratch.configPath, "--json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let shown = try AgentStatus.decoder.decode(AgentStatus.self, from: Data(json.stdout.utf8))
        XCTAssertEqual(shown.running, true)
        XCTAssertEqual(shown.jobs.first?.lastBackup, job.lastBackup)
        let table = try scratch.run(["status", "--config", scratch.configPath])
        XCTAssertTrue(table.stdout.contains("agent: running (pid \(agent.process.processIdentifier))"), table.stdout)
        XCTAssertTrue(table.stdout.contains("db      full"), table.stdout)

        agent.process.terminate()
        let exit = try await agent.waitForExit(within: 30)
        XCTAssertEqual(exit, 0, agent.log)
        let after = try scratch.run(["status", "--config", scratch.configPath, "--json"])
        XCTAssertEqual(try AgentStatus.decoder.decode(AgentStatus.self, from: Data(after.stdout.utf8)).running, false)
    }

    func testSIGTERMDuringABackupLeavesNoPartialManifestAndTheNextRunSucceeds() async throws {
        let scratch = try AgentScratch()
        let source = """
        [source.db]
        engine = "fault"
        artifacts = "base:20000000:cdc"
        plugin_timeout = 3600
        %FAULT%
        [source.db.schedule]
        full = "0 0 1 jan *"
        """
        try scratch.writeConfig(agent: "listen = \"\"\ntime_zone = \"UTC\"\nshutdown_grace = 20",
                                source.replacingOccurrences(of: "%FAULT%", with: "fault = \"hang-after:6000000\""))
        let first = try RunningAgent(scratch)
        defer { if first.process.isRunning { first.process.terminate() } }
        // Mid-backup: 6 MB sent, the plugin now stalls (as a slow database would).
        try await eventually("the backup to be under way") { first.log.contains("injecting hang-after") }
        let pid = try XCTUnwrap(state(scratch)?.jobs.first?.pid)
        XCTAssertEqual(kill(pid, 0), 0, "the backup child runs")
        first.process.terminate()  // SIGTERM
        let exit = try await first.waitForExit(within: 30)
        XCTAssertEqual(exit, 0, first.log)
        XCTAssertTrue(first.log.contains("sending SIGTERM to pid \(pid)"), first.log)
        XCTAssertFalse(first.log.contains("SIGKILL"), "SIGTERM was enough")
        try await eventually("no process of the job's group (coffer backup, the plugin) left", within: 10) {
            kill(-pid, 0) == -1 && errno == ESRCH
        }
        XCTAssertEqual(try state(scratch)?.jobs.first?.lastResult, "stopped")
        // Nothing recorded: no manifest, and the vault checks clean.
        XCTAssertEqual(try scratch.backups(source: "db").count, 0)
        let manifests = (try? FileManager.default.contentsOfDirectory(atPath: scratch.vault + "/manifests")) ?? []
        XCTAssertEqual(manifests, [], "no manifest file, whole or partial")
        let check = try scratch.checkVault()
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)

        // The next agent (same lock, same state) runs the backup to the end.
        try scratch.writeConfig(agent: "listen = \"\"\ntime_zone = \"UTC\"", source.replacingOccurrences(of: "%FAULT%", with: ""))
        let second = try RunningAgent(scratch)
        defer { if second.process.isRunning { second.process.terminate() } }
        try await eventually("the next run to succeed", within: 120) { try self.state(scratch)?.jobs.first?.lastResult == "ok" }
        let backups = try scratch.backups(source: "db")
        XCTAssertEqual(backups.count, 1)
        XCTAssertEqual(backups[0]["size"] as? Int, 20_000_000)
        let checkAfter = try scratch.run(["vault", "check", "--vault", scratch.vault, "--read-data"])
        XCTAssertEqual(checkAfter.status, 0, checkAfter.stdout + checkAfter.stderr)
        second.process.terminate()
        _ = try await second.waitForExit(within: 30)
    }

    func testTheLockRefusesASecondAgent() async throws {
        let scratch = try AgentScratch()
        try scratch.writeConfig(agent: "listen = \"\"\ncatch_up = false", """
        [source.db]
        engine = "fault"
        artifacts = "base:1000:cdc"
        [source.db.schedule]
        full = "0 0 1 jan *"
        """)
        let first = try RunningAgent(scratch)
        defer { if first.process.isRunning { first.process.terminate() } }
        try await eventually("the first agent to start") { try self.state(scratch) != nil }
        let second = try scratch.run(["agent", "--config", scratch.configPath])
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.stderr.contains("another coffer agent (pid \(first.process.processIdentifier)) holds \(scratch.state)/agent.lock"),
                      second.stderr)
        XCTAssertTrue(first.process.isRunning, "the first agent is untouched")
        first.process.terminate()
        _ = try await first.waitForExit(within: 30)
        // Once it is gone, an agent starts again.
        let third = try RunningAgent(scratch)
        try await eventually("a new agent after the first stopped") {
            third.log.contains("coffer-agent: started") && third.process.isRunning
        }
        third.process.terminate()
        let exit = try await third.waitForExit(within: 30)
        XCTAssertEqual(exit, 0)
    }
}
