import CofferAgent
@testable import CofferDaemon
import Foundation
import XCTest

final class ShutdownTests: XCTestCase {
    /// A job that ignores SIGTERM (a stand-in `coffer` that traps it, as does the `sleep`
    /// it starts) is SIGKILLed, whole process group, once shutdown_grace is over.
    func testAJobIgnoringSIGTERMIsKilledAfterTheGrace() async throws {
        let scratch = try AgentScratch()
        let stubborn = scratch.dir + "/stubborn-coffer"
        let marker = scratch.dir + "/started"
        try """
        #!/bin/sh
        trap '' TERM
        touch \(marker)
        sleep 1000
        """.write(toFile: stubborn, atomically: true, encoding: .utf8)
        chmod(stubborn, 0o755)
        try scratch.writeConfig(agent: "listen = \"\"\ntime_zone = \"UTC\"\nshutdown_grace = 1\ncoffer = \"\(stubborn)\"", """
        [source.db]
        engine = "fault"
        [source.db.schedule]
        full = "0 0 1 jan *"
        """)
        let config = try scratch.config()
        let agent = try Agent(config: config, options: .init(configPath: scratch.configPath, coffer: config.agent.coffer!,
                                                            environment: scratch.environment),
                              clock: SystemClock())
        let loop = Task { await agent.run() }
        // catch_up starts it at once.
        try await eventually("the job to start") { FileManager.default.fileExists(atPath: marker) }
        let running = await agent.status().jobs.first
        let pid = try XCTUnwrap(running?.pid)
        let began = ContinuousClock.now
        await agent.shutdown()
        await loop.value
        let took = began.duration(to: .now)
        XCTAssertGreaterThanOrEqual(took, .seconds(1), "SIGTERM alone did not end it: the grace period passed")
        XCTAssertLessThan(took, .seconds(10))
        // SIGKILL reached the whole group, sleep included (its reaping by init is asynchronous).
        try await eventually("the job's process group to be gone", within: 10) { kill(-pid, 0) == -1 && errno == ESRCH }
        let ended = await agent.status().jobs.first
        let job = try XCTUnwrap(ended)
        XCTAssertEqual(job.lastResult, "stopped")
        XCTAssertFalse(job.running)
    }
}
