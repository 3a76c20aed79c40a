import CofferFixtures
import CofferVault
import Foundation
import XCTest

/// The real `coffer prune` SIGKILLed at each step of its work (COFFER_FAILPOINT makes it kill
/// itself right after that step is durable): the vault checks clean with --read-data, every
/// backup that is still listed restores byte for byte, and the next prune (which takes over
/// the dead one's lock) finishes the job.
final class PruneCrashTests: XCTestCase {
    static let points = ["prune.manifest-removed", "gc.pack-written", "gc.index-written", "gc.index-removed",
                         "gc.plan-written", "gc.pack-deleted"]

    func testKilledAtEveryStepLeavesACleanVault() throws {
        for point in PruneCrashTests.points {
            try killed(at: point)
        }
    }

    private func killed(at point: String) throws {
        let v = try PruneVault()
        try v.writeConfig("""
            [source.s]
            engine = "stream"
            [source.s.retention]
            keep_last = 2
            """)
        // b1 goes; b2 shares b1's first 300 KiB, so b1's first pack is mostly garbage with a
        // live prefix (repacked); b0 goes too, wholly garbage.
        let b1 = generated(3 << 20, seed: 1)
        var data: [String: [UInt8]] = [:]
        for bytes in [generated(2 << 20, seed: 9), b1, Array(b1[0 ..< 300 << 10]) + generated(2 << 20, seed: 2),
                      generated(2 << 20, seed: 3)] {
            data[try v.put(bytes, source: "s")] = bytes
        }
        let crashed = try v.run(["prune", "--config", v.config, "--grace", "0s", "--repack-threshold", "0.5"],
                                env: ["COFFER_FAILPOINT": point])
        XCTAssertEqual(crashed.signal, SIGKILL, "\(point): prune did not reach its failpoint: status \(crashed.status) \(crashed.stderr)")
        XCTAssertEqual(v.files("locks"), ["prune"], "\(point): the killed prune leaves its lock")

        try assertClean(try v.check(), "killed at \(point)")
        try assertRestorable(v, data, point)

        // The next prune takes over the dead one's lock and completes the work.
        let next = try v.run(["prune", "--config", v.config, "--grace", "0s", "--json"])
        XCTAssertEqual(next.status, 0, "\(point): \(next.stderr)")
        try assertClean(try v.check(), "after the prune that followed the one killed at \(point)")
        try assertRestorable(v, data, point)
        XCTAssertEqual(v.files("manifests").count, 2, point)
        XCTAssertEqual(v.files("gc"), [], "\(point): a plan is left")
        XCTAssertEqual(v.files("locks"), [], point)
        // Nothing unneeded is left: no garbage, no unindexed pack.
        let final = try v.run(["prune", "--config", v.config, "--grace", "0s", "--json"]).check("prune").json()
        let gc = try XCTUnwrap(final["gc"] as? [String: Any])
        XCTAssertEqual(gc["garbageBlobs"] as? Int, 0, "\(point): \(gc)")
        XCTAssertEqual(gc["packsUnindexed"] as? Int, 0, "\(point): \(gc)")
        XCTAssertEqual(gc["packsPlanned"] as? Int, 0, "\(point): \(gc)")
    }

    private func assertRestorable(_ v: PruneVault, _ data: [String: [UInt8]], _ point: String) throws {
        for id in v.files("manifests") {
            let r = try v.get(id)
            XCTAssertEqual(r.status, 0, "\(point): backup \(id) does not restore: \(r.stderr)")
            XCTAssertEqual(Array(r.stdout), data[id], "\(point): backup \(id) restores other bytes")
        }
    }
}
