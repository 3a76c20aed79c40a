import CofferAgent
import CofferFixtures
import CofferPluginProtocol
import CofferVault
import Foundation
import XCTest

/// Prune on a PostgreSQL-shaped history with a timeline switch, the chain judged by the
/// real `coffer-postgres` plugin (it reasons on positions and metadata only, which the test
/// writes with chosen times). The point-in-time window stays restorable to every target the
/// test tries, verification stays clean, and the timeline history file archived long
/// before the kept backups is kept because the plugin says the chain needs it.
final class ChainRetentionTests: XCTestCase {
    static let day: TimeInterval = 86_400
    static let segment: UInt64 = 16 << 20

    func testPitrWindowKeepsTheChainWholeAcrossATimelineSwitch() throws {
        let v = try PruneVault()
        try v.writeConfig("""
            [source.main]
            engine = "postgres"
            [source.main.retention]
            keep_last = 1
            pitr_window = "3d"
            """)
        let day0 = Timestamp.parse("2026-11-10T00:00:00Z")!
        func at(_ days: Double) -> Date { day0.addingTimeInterval(days * ChainRetentionTests.day) }
        let now = at(10.5)
        let vault = try v.open()

        // Timeline 1: segments 1-9 archived every 0.2 day; promoted at 0/A000000 (history at
        // day 2); timeline 2: segments 10-30 every 0.4 day from day 2.4.
        var segmentsTL1: [String] = []
        for k in UInt64(1)...9 {
            segmentsTL1.append(try storeSegment(vault, timeline: 1, number: k, archived: at(0.2 * Double(k - 1))))
        }
        let history = "00000002.history"
        try storeLog(vault, name: history, archived: at(2.0), positions: ["timeline": "2"],
                     metadata: ["type": "history", "history": "1\t0/A000000\tno recovery target specified\n"])
        var segmentsTL2: [UInt64: String] = [:]
        for k in UInt64(10)...30 {
            segmentsTL2[k] = try storeSegment(vault, timeline: 2, number: k, archived: at(2.4 + 0.4 * Double(k - 10)))
        }
        // Base backups: B1 on timeline 1, B2 and B3 on timeline 2 (stop in segments 3, 16, 26).
        let b1 = try storeBase(vault, timeline: 1, started: at(0.3), consistent: at(0.35), stop: "0/3000100")
        let b2 = try storeBase(vault, timeline: 2, started: at(4.05), consistent: at(4.1), stop: "0/10000100")
        let b3 = try storeBase(vault, timeline: 2, started: at(8.05), consistent: at(8.1), stop: "0/1A000100")

        let before = try v.run(["verify", "--config", v.config, "--source", "main", "--json"])
        XCTAssertEqual(before.status, 0, "the synthetic history must verify clean to begin with: \(before.text) \(before.stderr)")

        let r = try v.run(["prune", "--config", v.config, "--now", Timestamp.format(now), "--grace", "0s", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let source = try XCTUnwrap((try r.json()["sources"] as? [[String: Any]])?.first)
        let backups = try XCTUnwrap(source["backups"] as? [[String: Any]])
        let kept = Set(backups.filter { $0["keep"] as? Bool == true }.map { $0["id"] as! String })
        // B3: keep_last; B2: the newest base that finished before now - 3d (day 7.5).
        XCTAssertEqual(kept, [b2, b3])
        XCTAssertFalse(kept.contains(b1))
        let b2Reasons = try XCTUnwrap(backups.first { $0["id"] as? String == b2 }?["reasons"] as? [String])
        XCTAssertTrue(b2Reasons.contains { $0.hasPrefix("pitr_window 3d") }, "\(b2Reasons)")

        // Logs: from an hour before B2 began (day 4.008) on: timeline 2 from segment 15; and the
        // history file, which the time rule drops and the plugin's chain needs.
        let remaining = try vault.backups(source: "main").filter { $0.manifest.kind == "log" }.compactMap { $0.manifest.positions["log"] }
        let expectedLogs = Set([history] + (15...30).map { segmentsTL2[UInt64($0)]! })
        XCTAssertEqual(Set(remaining), expectedLogs, "\(source["logNotes"] ?? "")")
        XCTAssertEqual(source["logsRemoved"] as? Int, 9 + 5)
        let logs = try XCTUnwrap(source["logs"] as? [[String: Any]])
        let historyDecision = try XCTUnwrap(logs.first { $0["log"] as? String == history })
        XCTAssertEqual(historyDecision["keep"] as? Bool, true)
        XCTAssertTrue((historyDecision["reasons"] as? [String])?.first?.hasPrefix("the engine's chain needs it") ?? false, "\(historyDecision)")
        for name in segmentsTL1 { XCTAssertNil(try vault.logManifest(source: "main", log: name), "\(name) should be gone") }

        // The chain is whole: verification finds nothing, and every target in the window plans.
        let after = try v.run(["verify", "--config", v.config, "--source", "main", "--json"])
        XCTAssertEqual(after.status, 0, "verify after prune: \(after.text) \(after.stderr)")
        let records = try SourceRecords(vault: try v.open(), source: "main", checkBlobs: true)
        XCTAssertEqual(records.problems, [])
        let lastCommit = at(2.4 + 0.4 * 20).addingTimeInterval(-600)
        for target in [now.addingTimeInterval(-3 * ChainRetentionTests.day), at(7.9), at(8.5), at(9.7), lastCommit.addingTimeInterval(-60)] {
            let plugin = try PluginProcess(path: BuildProducts.directory(containing: "coffer-postgres") + "/coffer-postgres", timeout: 60) { _ in }
            let plan = try PluginJob(vault: records.records.isEmpty ? vault : try v.open(), plugin: plugin, engine: "postgres")
                .chain(source: "main", records: records.records, action: "plan", target: ["time": Timestamp.format(target)], options: [:])
            XCTAssertNil(plan.refusal, "target \(Timestamp.format(target)): \(plan.refusal ?? "")")
            XCTAssertEqual(plan.plan?.first, target < at(8.1) ? b2 : b3, "target \(Timestamp.format(target))")
        }
        try assertClean(try v.check(), "after pruning logs")
    }

    // MARK: - a synthetic history

    private func storeLog(_ vault: Vault, name: String, archived: Date, positions: [String: String],
                          metadata: [String: String]) throws {
        let session = try BackupSession(vault: vault, dedupe: false)
        let artifact = try session.store(name: "wal/" + name, chunker: .whole, bytes: Array(name.utf8))
        var p = positions
        p["log"] = name
        var m = metadata
        m["wal_segment_size"] = String(ChainRetentionTests.segment)
        let id = try session.commit(Manifest(source: "main", engine: "postgres", kind: "log", started: archived,
                                             finished: archived.addingTimeInterval(1), positions: p, artifacts: [artifact], metadata: m))
        try vault.recordLog(source: "main", log: name, manifest: id)
    }

    /// A segment whose last commit was ten minutes before it was archived.
    private func storeSegment(_ vault: Vault, timeline: UInt32, number: UInt64, archived: Date) throws -> String {
        let name = String(format: "%08X%08X%08X", timeline, UInt32(number >> 8), UInt32(number & 0xFF))
        let commit = Int64(archived.addingTimeInterval(-600).timeIntervalSince1970 * 1_000_000)
        try storeLog(vault, name: name, archived: archived,
                     positions: ["timeline": String(timeline), "start_lsn": lsn(number * ChainRetentionTests.segment),
                                 "end_lsn": lsn((number + 1) * ChainRetentionTests.segment)],
                     metadata: ["type": "segment", "commits": "1", "first_commit": String(commit), "last_commit": String(commit)])
        return name
    }

    private func storeBase(_ vault: Vault, timeline: UInt32, started: Date, consistent: Date, stop: String) throws -> String {
        let session = try BackupSession(vault: vault)
        let artifact = try session.store(name: "base", chunker: .contentDefined, bytes: generated(4096, seed: UInt64(started.timeIntervalSince1970)))
        let micros = String(Int64(consistent.timeIntervalSince1970 * 1_000_000))
        return try session.commit(Manifest(source: "main", engine: "postgres", kind: "full", started: started, finished: consistent,
                                           positions: ["timeline": String(timeline), "start_lsn": stop, "stop_lsn": stop,
                                                       "consistent_lsn": stop, "consistent_time": micros],
                                           artifacts: [artifact], metadata: ["wal_segment_size": String(ChainRetentionTests.segment)]))
    }

    private func lsn(_ value: UInt64) -> String { String(format: "%X/%X", UInt32(value >> 32), UInt32(value & 0xFFFF_FFFF)) }
}
