import CofferAgent
@testable import CofferDaemon
import Foundation
import XCTest

/// The scheduler on a clock the test moves: real `coffer backup` children with the fault
/// plugin, a real vault, a real webhook receiver. Minutes pass in milliseconds.
final class SchedulerTests: XCTestCase {
    func date(_ iso: String) -> Date { ISO8601DateFormatter().date(from: iso)! }

    /// Moves the clock a minute at a time to `end`, waiting at each step until the agent
    /// has handled that time and every job it started has ended.
    func step(_ clock: ManualClock, _ agent: Agent, to end: Date, by seconds: TimeInterval = 60) async throws {
        while clock.now() < end {
            clock.advance(to: min(clock.now().addingTimeInterval(seconds), end))
            let now = clock.now()
            try await eventually("the agent to finish what is due at \(now)") { await agent.isIdle(at: now) }
        }
    }

    func job(_ agent: Agent, _ id: String) async -> JobStatus { await agent.status().jobs.first { $0.id == id }! }

    func testScheduleRunsExactlyTheDueBackups() async throws {
        let scratch = try AgentScratch()
        try scratch.writeConfig(agent: "listen = \"\"\ncatch_up = false\ntime_zone = \"UTC\"", """
        [source.a]
        engine = "fault"
        artifacts = "data:300000:cdc"
        [source.a.schedule]
        full = "0,30 * * * *"

        [source.b]
        engine = "fault"
        artifacts = "data:200000:cdc"
        seed = 2
        [source.b.schedule]
        full = "45 10 * * *"
        time_zone = "Europe/Berlin"
        """)
        let clock = ManualClock(date("2026-11-26T09:00:00Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        // After 09:00 up to 10:59 UTC: a runs at 09:30, 10:00, 10:30; b at 10:45 Berlin = 09:45 UTC.
        try await step(clock, agent, to: date("2026-11-26T10:59:00Z"))
        let a = await job(agent, "a/full"), b = await job(agent, "b/full")
        XCTAssertEqual(a.runs, 3)
        XCTAssertEqual(b.runs, 1)
        XCTAssertEqual(a.lastSuccess, date("2026-11-26T10:30:00Z"))
        XCTAssertEqual(b.lastSuccess, date("2026-11-26T09:45:00Z"))
        XCTAssertEqual(a.nextRun, date("2026-11-26T11:00:00Z"))
        XCTAssertEqual(b.nextRun, date("2026-11-27T09:45:00Z"))
        // What the vault holds is what ran: three backups of a, one of b, all complete.
        let backupsA = try scratch.backups(source: "a"), backupsB = try scratch.backups(source: "b")
        XCTAssertEqual(backupsA.count, 3)
        XCTAssertEqual(backupsB.count, 1)
        XCTAssertEqual(backupsA.map { $0["size"] as? Int }, [300000, 300000, 300000])
        XCTAssertEqual(a.lastBackup, backupsA.last?["id"] as? String)
        XCTAssertEqual(a.bytesRead, 300000)
        await agent.shutdown()
        await loop.value
        // The state survives: a new agent knows the last successes.
        let again = try scratch.makeAgent(clock: clock)
        let restored = await again.status().jobs.first { $0.id == "a/full" }!
        XCTAssertEqual(restored.lastSuccess, date("2026-11-26T10:30:00Z"))
        XCTAssertEqual(restored.runs, 3)
    }

    func testCatchUpRunsAMissedRunOnceAtStart() async throws {
        let scratch = try AgentScratch()
        try scratch.writeConfig(agent: "listen = \"\"\ntime_zone = \"UTC\"", """
        [source.a]
        engine = "fault"
        artifacts = "data:100000:cdc"
        [source.a.schedule]
        full = "0 2 * * *"
        """)
        let clock = ManualClock(date("2026-11-26T09:00:00Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        try await eventually("the catch-up run") {
            let runs = await self.job(agent, "a/full").runs
            let idle = await agent.isIdle(at: clock.now())
            return runs == 1 && idle
        }
        // An hour later nothing more is due (the next run is at 02:00 tomorrow).
        try await step(clock, agent, to: date("2026-11-26T10:00:00Z"), by: 600)
        let a = await job(agent, "a/full")
        XCTAssertEqual(a.runs, 1)
        XCTAssertEqual(a.lastResult, "ok")
        XCTAssertEqual(try scratch.backups(source: "a").count, 1)
        await agent.shutdown()
        await loop.value
    }

    func testADueRunWhileThePreviousRunsIsSkipped() async throws {
        let scratch = try AgentScratch()
        // The backup hangs after 100 kB until the agent stops it (plugin_timeout is long).
        try scratch.writeConfig(agent: "listen = \"\"\ncatch_up = false\ntime_zone = \"UTC\"", """
        [source.slow]
        engine = "fault"
        artifacts = "data:5000000:cdc"
        fault = "hang-after:100000"
        plugin_timeout = 3600
        [source.slow.schedule]
        full = "* * * * *"
        """)
        let clock = ManualClock(date("2026-11-26T09:00:30Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        clock.advance(to: date("2026-11-26T09:01:00Z"))
        try await eventually("the first run to start") { await self.job(agent, "slow/full").running }
        let pid = await job(agent, "slow/full").pid
        for minute in 2...4 {
            let t = date("2026-11-26T09:0\(minute):00Z")
            clock.advance(to: t)
            try await eventually("the agent to handle \(t)") { (await agent.lastTick ?? .distantPast) >= t }
        }
        let slow = await job(agent, "slow/full")
        XCTAssertTrue(slow.running)
        XCTAssertEqual(slow.pid, pid, "still the first run")
        XCTAssertEqual(slow.skipped, 3)
        XCTAssertEqual(slow.runs, 0, "none finished")
        let metrics = await agent.metricsText()
        XCTAssertTrue(metrics.contains(#"coffer_job_runs_total{source="slow",kind="full",result="skipped"} 3"#), metrics)
        // Shutdown stops the hung run (and its plugin): nothing recorded, nothing left running.
        await agent.shutdown()
        await loop.value
        try await eventually("the job's process group (coffer backup, the plugin) to be gone", within: 10) {
            kill(-pid!, 0) == -1 && errno == ESRCH
        }
        XCTAssertEqual(try scratch.backups(source: "slow").count, 0)
        let stopped = await job(agent, "slow/full")
        XCTAssertEqual(stopped.lastResult, "stopped")
    }

    func testFailedJobIsRetriedWithBackoffThenAlerted() async throws {
        let scratch = try AgentScratch()
        let receiver = AlertReceiver()
        try await receiver.start()
        // The plugin crashes (abort) 1 byte in, every time.
        try scratch.writeConfig(agent: """
        listen = ""
        catch_up = false
        time_zone = "UTC"
        retry_attempts = 2
        retry_delay = 10
        retry_max_delay = 15
        webhooks = ["\(receiver.url)"]
        """, """
        [source.bad]
        engine = "fault"
        artifacts = "data:100000:cdc"
        fault = "crash-after:1"
        [source.bad.schedule]
        full = "0 * * * *"
        """)
        let clock = ManualClock(date("2026-11-26T09:59:00Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        try await step(clock, agent, to: date("2026-11-26T10:00:00Z"))
        var bad = await job(agent, "bad/full")
        XCTAssertEqual(bad.runs, 1)
        XCTAssertEqual(bad.lastResult, "failed")
        XCTAssertEqual(bad.lastExitCode, 20)
        XCTAssertEqual(bad.retryAt, date("2026-11-26T10:00:10Z"), "first retry after retry_delay")
        // Not a moment before the backoff is over.
        try await step(clock, agent, to: date("2026-11-26T10:00:09Z"), by: 9)
        bad = await job(agent, "bad/full")
        XCTAssertEqual(bad.runs, 1)
        try await step(clock, agent, to: date("2026-11-26T10:00:10Z"), by: 1)
        bad = await job(agent, "bad/full")
        XCTAssertEqual(bad.runs, 2)
        // Doubled, but capped by retry_max_delay.
        XCTAssertEqual(bad.retryAt, date("2026-11-26T10:00:25Z"))
        XCTAssertTrue(receiver.alerts.isEmpty, "no alert while retries remain")
        try await step(clock, agent, to: date("2026-11-26T10:00:25Z"), by: 15)
        bad = await job(agent, "bad/full")
        XCTAssertEqual(bad.runs, 3)
        XCTAssertEqual(bad.failures, 3)
        XCTAssertNil(bad.retryAt, "retries used up: the next try is the next scheduled run")
        try await eventually("the alert at the receiver") { receiver.alerts.count == 1 }
        let alert = receiver.alerts[0]
        XCTAssertEqual(alert["type"] as? String, "job_failed")
        XCTAssertEqual(alert["source"] as? String, "bad")
        XCTAssertEqual(alert["kind"] as? String, "full")
        XCTAssertEqual(alert["attempts"] as? Int, 3)
        XCTAssertEqual(alert["exitCode"] as? Int, 20)
        XCTAssertEqual(alert["time"] as? String, "2026-11-26T10:00:25Z")
        let log = (alert["log"] as? [String] ?? []).joined(separator: "\n")
        XCTAssertTrue(log.contains("coffer-fault stopped unexpectedly (killed by signal 6)"), log)
        XCTAssertEqual(try scratch.backups(source: "bad").count, 0, "no failed run left a backup")
        let status = await agent.status()
        XCTAssertEqual(status.alerts.last?.type, "job_failed")
        await agent.shutdown()
        await loop.value
        let delivered = await agent.status().alerts.last?.delivered
        XCTAssertEqual(delivered, true)
        await receiver.stop()
    }

    func testATimedOutPluginFailsTheRunAndIsRetried() async throws {
        let scratch = try AgentScratch()
        // The plugin hangs; coffer backup gives up after plugin_timeout (1 s, real time).
        try scratch.writeConfig(agent: "listen = \"\"\ncatch_up = false\ntime_zone = \"UTC\"\nretry_attempts = 1\nretry_delay = 60", """
        [source.hung]
        engine = "fault"
        artifacts = "data:1000000:cdc"
        fault = "hang-after:1000"
        plugin_timeout = 1
        [source.hung.schedule]
        full = "0 * * * *"
        """)
        let clock = ManualClock(date("2026-11-26T09:59:30Z"))
        let agent = try scratch.makeAgent(clock: clock)
        let loop = Task { await agent.run() }
        try await step(clock, agent, to: date("2026-11-26T10:00:00Z"), by: 30)
        var hung = await job(agent, "hung/full")
        XCTAssertEqual(hung.lastResult, "failed")
        XCTAssertEqual(hung.lastExitCode, 20)
        XCTAssertTrue(hung.lastError?.contains("exit code 20") == true, hung.lastError ?? "")
        XCTAssertEqual(hung.retryAt, date("2026-11-26T10:01:00Z"))
        try await step(clock, agent, to: date("2026-11-26T10:01:00Z"), by: 60)
        hung = await job(agent, "hung/full")
        XCTAssertEqual(hung.runs, 2)
        let last = await agent.status().alerts.last
        XCTAssertEqual(last?.type, "job_failed")
        await agent.shutdown()
        await loop.value
    }
}
