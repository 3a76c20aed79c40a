import CofferAgent
import CofferDaemon
import Foundation
import XCTest

final class AgentConfigTests: XCTestCase {
    func testAgentSectionAndSchedulesParse() throws {
        let config = try CofferConfig.parse("""
        [agent]
        listen = "0.0.0.0:9500"
        state_dir = "/var/lib/coffer-test"
        time_zone = "Europe/Berlin"
        max_concurrent_jobs = 3
        shutdown_grace = 45
        webhooks = ["http://127.0.0.1:9000/hook", "https://alerts.example/coffer"]
        webhook_attempts = 7
        stale_grace = 600
        capture_lag = 90
        retry_attempts = 5
        retry_delay = 10
        retry_max_delay = 120
        catch_up = false
        coffer = "/usr/local/bin/coffer"

        [source.pg]
        engine = "postgres"
        pgdata = "/srv/pg"
        capture = true
        [source.pg.schedule]
        full = "0 2 * * sun"
        incremental = "0 2 * * mon-sat"
        verify = "30 3 * * *"
        prune = "0 4 * * *"
        time_zone = "America/New_York"
        """)
        let a = config.agent
        XCTAssertEqual(a.listen, "0.0.0.0:9500")
        XCTAssertEqual(a.stateDir, "/var/lib/coffer-test")
        XCTAssertEqual(a.timeZone, "Europe/Berlin")
        XCTAssertEqual(a.maxConcurrentJobs, 3)
        XCTAssertEqual(a.shutdownGrace, 45)
        XCTAssertEqual(a.webhooks, ["http://127.0.0.1:9000/hook", "https://alerts.example/coffer"])
        XCTAssertEqual(a.webhookAttempts, 7)
        XCTAssertEqual(a.staleGrace, 600)
        XCTAssertEqual(a.captureLag, 90)
        XCTAssertEqual(a.retryAttempts, 5)
        XCTAssertEqual(a.retryDelay, 10)
        XCTAssertEqual(a.retryMaxDelay, 120)
        XCTAssertFalse(a.catchUp)
        XCTAssertEqual(a.coffer, "/usr/local/bin/coffer")
        let pg = try config.source("pg")
        XCTAssertTrue(pg.capture)
        XCTAssertEqual(pg.schedule.full, "0 2 * * sun")
        XCTAssertEqual(pg.schedule.timeZone, "America/New_York")
        // Agent keys never reach the plugin.
        XCTAssertEqual(pg.options, ["pgdata": "/srv/pg"])
        let plan = try JobSpec.plan(config)
        XCTAssertEqual(plan.map(\.id), ["pg/full", "pg/incremental", "pg/verify", "pg/prune", "pg/capture"])
        XCTAssertEqual(plan[0].schedule?.timeZone.identifier, "America/New_York")
    }

    func testDefaults() throws {
        let config = try CofferConfig.parse("[source.a]\nengine = \"fault\"\n")
        XCTAssertEqual(config.agent, CofferConfig.AgentSettings())
        XCTAssertEqual(config.agent.listen, "127.0.0.1:9466")
        XCTAssertEqual(config.agent.maxConcurrentJobs, 2)
        XCTAssertEqual(try JobSpec.plan(config).count, 0)
    }

    func testBadValuesAreNamed() {
        func message(_ text: String) -> String {
            do {
                let config = try CofferConfig.parse(text)
                _ = try JobSpec.plan(config)
                return "accepted"
            } catch { return "\(error)" }
        }
        let cases: [(String, String)] = [
            ("[agent]\nlisten = \"nonsense\"", "agent.listen must be HOST:PORT"),
            ("[agent]\nmax_concurrent_jobs = 0", "agent.max_concurrent_jobs must be a whole number of at least 1"),
            ("[agent]\nwebhooks = [\"ftp://x\"]", "agent.webhooks: 'ftp://x' is not an http(s) URL"),
            ("[agent]\ntime_zone = \"Mars/Olympus\"", "unknown time zone 'Mars/Olympus'"),
            ("[agent]\nretry_delay = -1", "agent.retry_delay must be a positive number"),
            ("[agent]\nfrobnicate = 1", "unknown key agent.frobnicate"),
            ("[source.a]\nengine = \"x\"\ncapture = \"yes\"", "source.a.capture must be true or false"),
            ("[source.a]\nengine = \"x\"\n[source.a.schedule]\nweekly = \"* * * * *\"", "unknown key source.a.schedule.weekly"),
            ("[source.a]\nengine = \"x\"\n[source.a.schedule]\nfull = \"61 * * * *\"", "source.a.schedule.full: '61 * * * *': minute field '61'"),
            ("[source.a]\nengine = \"x\"\n[source.a.schedule]\ntime_zone = \"Nowhere\"", "source.a.schedule.time_zone: unknown time zone 'Nowhere'"),
            ("[source.a]\nengine = \"x\"\ncapture = true\n[source.a.schedule]\nlog = \"* * * * *\"", "capture = true already stores its logs continuously; remove schedule.log"),
        ]
        for (text, expected) in cases {
            let m = message(text)
            XCTAssertTrue(m.contains(expected), "\(text)\n→ \(m)")
        }
    }
}
