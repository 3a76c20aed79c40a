import CofferAgent
@testable import CofferDaemon
import Foundation
import XCTest

/// Capture supervision, capture lag and staleness alerts, on a manual clock with real
/// `coffer capture` / `coffer backup` children and a real webhook receiver.
final class AlertTests: XCTestCase {
    func date(_ iso: String) -> Date { ISO8601DateFormatter().date(from: iso)! }
    func job(_ agent: Agent, _ id: String) async -> JobStatus { await agent.status().jobs.first { $0.id == id }! }

    func testCaptureRunsCommitsLogsAndAlertsWhenItFallsBehind() async throws {
        let scratch = try AgentScratch()
        let receiver = AlertReceiver()
        try await receiver.start()
        // After its first log the plugin goes quiet (only `alive`) for a minute.
        try scratch.writeConfig(agent: """
        listen = ""
        catch_up = false
        capture_lag = 120
        webhooks = ["\(receiver.url)"]
        """, """
        [source.stream]
        engine = "fault"
        capture = true
        log_size = 5000
        quiet_ms = 60000
        """)
        let clock = ManualClock(date("2026-11-26T12:00:00Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        try await eventually("the first captured log") { await self.job(agent, "stream/capture").logsCommitted == 1 }
        var capture = await job(agent, "stream/capture")
        XCTAssertTrue(capture.running)
        XCTAssertEqual(capture.lastLog, "log-000001")
        let logs = try scratch.run(["backups", "--vault", scratch.vault, "--source", "stream", "--logs", "--json"])
        let stored = try JSONSerialization.jsonObject(with: Data(logs.stdout.utf8)) as? [[String: Any]] ?? []
        XCTAssertEqual(stored.map { $0["id"] as? String }, [capture.lastBackup])
        // Two minutes without a log is within the bound; a second more is not.
        clock.advance(to: date("2026-11-26T12:02:00Z"))
        try await eventually("the agent to handle 12:02") { await agent.isIdle(at: clock.now()) }
        XCTAssertTrue(receiver.alerts.isEmpty)
        let lagText = await agent.metricsText()
        XCTAssertTrue(lagText.contains(#"coffer_capture_lag_seconds{source="stream"} 120.0"#), lagText)
        clock.advance(to: date("2026-11-26T12:02:01Z"))
        try await eventually("the capture_lag alert") { receiver.alerts.count == 1 }
        let alert = receiver.alerts[0]
        XCTAssertEqual(alert["type"] as? String, "capture_lag")
        XCTAssertEqual(alert["source"] as? String, "stream")
        XCTAssertEqual(alert["lagSeconds"] as? Double, 121)
        capture = await job(agent, "stream/capture")
        XCTAssertEqual(capture.captureLag, 121)
        // Shutdown stops the capture cleanly; nothing but whole logs in the vault.
        await agent.shutdown()
        await loop.value
        capture = await job(agent, "stream/capture")
        XCTAssertFalse(capture.running)
        let check = try scratch.checkVault()
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        await receiver.stop()
    }

    func testACaptureThatFailsIsRestartedWithBackoff() async throws {
        let scratch = try AgentScratch()
        // Fails while sending log 2, every time: log 1 is stored once, then each restart
        // resumes after it and fails again.
        try scratch.writeConfig(agent: "listen = \"\"\ncatch_up = false\nretry_delay = 5\nretry_attempts = 1\nretry_max_delay = 30", """
        [source.stream]
        engine = "fault"
        capture = true
        fail_at = 2
        """)
        let clock = ManualClock(date("2026-11-26T12:00:00Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        try await eventually("the capture to fail") { await self.job(agent, "stream/capture").failures == 1 }
        var capture = await job(agent, "stream/capture")
        XCTAssertEqual(capture.logsCommitted, 1)
        XCTAssertEqual(capture.retryAt, date("2026-11-26T12:00:05Z"))
        clock.advance(to: date("2026-11-26T12:00:05Z"))
        try await eventually("the restarted capture to fail") { await self.job(agent, "stream/capture").failures == 2 }
        capture = await job(agent, "stream/capture")
        // Retries used up: alerted, and capture keeps being retried at the longest delay.
        XCTAssertEqual(capture.retryAt, date("2026-11-26T12:00:35Z"))
        let alerts = await agent.status().alerts
        XCTAssertEqual(alerts.map(\.type), ["job_failed"])
        await agent.shutdown()
        await loop.value
    }

    func testASourceWithoutAGoodBackupIsStale() async throws {
        let scratch = try AgentScratch()
        let receiver = AlertReceiver()
        try await receiver.start()
        try scratch.writeConfig(agent: """
        listen = ""
        catch_up = false
        time_zone = "UTC"
        retry_attempts = 0
        stale_grace = 1800
        webhooks = ["\(receiver.url)"]
        """, """
        [source.db]
        engine = "fault"
        artifacts = "data:1000:cdc"
        fault = "error-after:0"
        [source.db.schedule]
        full = "0 * * * *"
        """)
        let clock = ManualClock(date("2026-11-26T09:30:00Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        // 10:00 fails (alert job_failed); stale at 10:00 + 30 min, not before.
        clock.advance(to: date("2026-11-26T10:00:00Z"))
        try await eventually("the 10:00 run to fail") { await self.job(agent, "db/full").failures == 1 }
        try await eventually("the failure alert") { receiver.alerts.count == 1 }
        clock.advance(to: date("2026-11-26T10:29:59Z"))
        try await eventually("the agent to handle 10:29:59") { await agent.isIdle(at: clock.now()) }
        var db = await job(agent, "db/full")
        XCTAssertFalse(db.stale)
        clock.advance(to: date("2026-11-26T10:30:00Z"))
        try await eventually("the stale alert") { receiver.alerts.count == 2 }
        XCTAssertEqual(receiver.alerts.map { $0["type"] as? String }, ["job_failed", "stale"])
        XCTAssertEqual(receiver.alerts[1]["time"] as? String, "2026-11-26T10:30:00Z")
        db = await job(agent, "db/full")
        XCTAssertTrue(db.stale)
        let metrics = await agent.metricsText()
        XCTAssertTrue(metrics.contains(#"coffer_job_stale{source="db",kind="full"} 1.0"#), metrics)
        // Once per episode: no second stale alert an hour later.
        clock.advance(to: date("2026-11-26T10:59:00Z"))
        try await eventually("the agent to handle 10:59") { await agent.isIdle(at: clock.now()) }
        XCTAssertEqual(receiver.alerts.count, 2)
        await agent.shutdown()
        await loop.value
        await receiver.stop()
    }
}
