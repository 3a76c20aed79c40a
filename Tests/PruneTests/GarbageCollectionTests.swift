import CofferFixtures
import CofferVault
import Foundation
import XCTest

/// `coffer prune` on real vaults through the real binary: what it removes, what it keeps,
/// repacking, the grace period and writer markers, the prune lock.
final class GarbageCollectionTests: XCTestCase {
    /// Packs 1 MiB, chunks ~64 KiB; source `s` keeps its newest two backups.
    func makeVault(policy: String = "keep_last = 2") throws -> PruneVault {
        let v = try PruneVault()
        try v.writeConfig("""
            [source.s]
            engine = "stream"
            [source.s.retention]
            \(policy)
            """)
        return v
    }

    func prune(_ v: PruneVault, _ extra: [String] = [], env: [String: String] = [:]) throws -> [String: Any] {
        let r = try v.run(["prune", "--config", v.config, "--json"] + extra, env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try r.json()
    }

    func gc(_ report: [String: Any]) throws -> [String: Any] { try XCTUnwrap(report["gc"] as? [String: Any]) }

    func testRemovedBackupsPacksAreDeletedAndKeptOnesRestore() throws {
        let v = try makeVault()
        let data = (1...4).map { generated(3 << 20, seed: UInt64($0)) }
        let ids = try data.map { try v.put($0, source: "s") }
        let packsBefore = v.files("packs").count
        let report = try prune(v, ["--grace", "0s"])
        let source = try XCTUnwrap((report["sources"] as? [[String: Any]])?.first)
        let decisions = try XCTUnwrap(source["backups"] as? [[String: Any]])
        XCTAssertEqual(Set(decisions.filter { $0["keep"] as? Bool == true }.map { $0["id"] as! String }), [ids[2], ids[3]])
        XCTAssertEqual(report["manifestsRemoved"] as? Int, 2)
        XCTAssertEqual(Set(v.files("manifests")), [ids[2], ids[3]])
        let g = try gc(report)
        XCTAssertGreaterThan(g["packsDeleted"] as? Int ?? 0, 0)
        XCTAssertLessThan(v.files("packs").count, packsBefore)
        XCTAssertEqual(v.files("gc"), [], "the plan is done once its packs are gone")
        for i in [2, 3] { XCTAssertEqual(Array(try v.get(ids[i]).check("get").stdout), data[i]) }
        for i in [0, 1] { XCTAssertEqual(try v.get(ids[i]).status, 16) }
        try assertClean(try v.check(), "after prune")
        // What is left is exactly what the kept backups need: a second prune finds no garbage.
        let again = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertEqual(again["garbageBlobs"] as? Int, 0)
        XCTAssertEqual(again["packsPlanned"] as? Int, 0)
    }

    func testMostlyGarbagePacksAreRepacked() throws {
        let v = try makeVault(policy: "keep_last = 1")
        let first = generated(4 << 20, seed: 11)
        // Shares the first 256 KiB with `first`, so `first`'s first pack keeps a live prefix.
        let second = Array(first[0 ..< 256 << 10]) + generated(2 << 20, seed: 12)
        _ = try v.put(first, source: "s")
        let keep = try v.put(second, source: "s")
        let report = try prune(v, ["--grace", "0s", "--repack-threshold", "0.5"])
        let g = try gc(report)
        XCTAssertGreaterThanOrEqual(g["packsRepacked"] as? Int ?? 0, 1, "\(g)")
        XCTAssertGreaterThanOrEqual(g["packsWritten"] as? Int ?? 0, 1)
        XCTAssertGreaterThan(g["bytesCopied"] as? Int ?? 0, 0)
        XCTAssertEqual(Array(try v.get(keep).check("get").stdout), second)
        try assertClean(try v.check(), "after repack")
        let again = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertEqual(again["garbageBlobs"] as? Int, 0, "repacking left garbage behind: \(again)")
    }

    func testDryRunChangesNothing() throws {
        let v = try makeVault(policy: "keep_last = 1")
        for seed in 1...3 { _ = try v.put(generated(2 << 20, seed: UInt64(seed)), source: "s") }
        let before = ["manifests", "packs", "index", "logs", "gc"].map { v.files($0) }
        let report = try prune(v, ["--dry-run", "--grace", "0s"])
        XCTAssertEqual(report["dryRun"] as? Bool, true)
        XCTAssertEqual(report["manifestsRemoved"] as? Int, 2)
        XCTAssertGreaterThan(try gc(report)["garbageBlobs"] as? Int ?? 0, 0, "a dry run counts the removed backups' blobs as garbage")
        XCTAssertEqual(["manifests", "packs", "index", "logs", "gc"].map { v.files($0) }, before)
        XCTAssertEqual(v.files("locks"), [])
    }

    func testPacksWaitForTheGracePeriodAndForWritersThatBeganBefore() throws {
        let v = try makeVault(policy: "keep_last = 1")
        _ = try v.put(generated(3 << 20, seed: 1), source: "s")
        let kept = try v.put(generated(3 << 20, seed: 2), source: "s")
        let packs = v.files("packs").count
        // Default grace (1h): planned, not deleted.
        var g = try gc(try prune(v))
        XCTAssertGreaterThan(g["packsPlanned"] as? Int ?? 0, 0)
        XCTAssertEqual(g["packsDeleted"] as? Int, 0)
        XCTAssertEqual(v.files("packs").count, packs)
        XCTAssertEqual(v.files("gc").count, 1)
        let pending = try XCTUnwrap((g["pending"] as? [[String: Any]])?.first)
        XCTAssertTrue((pending["waitingFor"] as? String ?? "").hasPrefix("grace period"), "\(pending)")
        try assertClean(try v.check(), "with a pending plan")

        // A live writer that began before the plan (this test process stands in for it).
        let marker = """
            {"host":"\(ProcessInfo.processInfo.hostName)","kind":"writer","pid":\(getpid()),\
            "refreshed":"\(Timestamp.format(Date()))","started":"2020-01-01T00:00:00.000Z","version":1}
            """
        try FileManager.default.createDirectory(atPath: v.vault + "/locks", withIntermediateDirectories: true)
        try marker.write(toFile: v.vault + "/locks/w-00000000000000aa", atomically: true, encoding: .utf8)
        g = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertEqual(g["packsDeleted"] as? Int, 0)
        let blocked = try XCTUnwrap((g["pending"] as? [[String: Any]])?.first)
        XCTAssertTrue((blocked["waitingFor"] as? String ?? "").contains("writers that began before it"), "\(blocked)")
        XCTAssertEqual(v.files("packs").count, packs)

        // The writer is gone: the plan runs.
        try FileManager.default.removeItem(atPath: v.vault + "/locks/w-00000000000000aa")
        g = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertGreaterThan(g["packsDeleted"] as? Int ?? 0, 0)
        XCTAssertLessThan(v.files("packs").count, packs)
        XCTAssertEqual(Array(try v.get(kept).check("get").stdout), generated(3 << 20, seed: 2))
        try assertClean(try v.check(), "after the plan ran")
    }

    /// A pack in two plans (planned, named again, loaded by a writer that began after the
    /// first plan, planned again): the older plan, which that writer does not hold, must not
    /// delete it while the newer one waits for the writer (docs/decisions/009).
    func testAPackInSeveralPlansWaitsForTheNewestOne() throws {
        let v = try makeVault(policy: "keep_last = 1")
        _ = try v.put(generated(3 << 20, seed: 1), source: "s")
        let kept = try v.put(generated(3 << 20, seed: 2), source: "s")
        let packs = v.files("packs").count
        // The newer plan: the first backup's packs, held by the default grace period.
        var g = try gc(try prune(v))
        XCTAssertGreaterThan(g["packsPlanned"] as? Int ?? 0, 0)
        let newer = try XCTUnwrap(v.files("gc").first)
        let plan = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: v.vault + "/gc/" + newer))) as? [String: Any])
        let planned = try XCTUnwrap(plan["packs"] as? [String])
        // An older plan with the same packs, from before the writer began.
        let older = try JSONSerialization.data(withJSONObject: ["created": "2020-01-01T00:00:00.000Z", "host": "elsewhere",
                                                               "packs": planned, "version": 1], options: [.sortedKeys])
        let olderName = String(repeating: "0", count: 63) + "1"
        try older.write(to: URL(fileURLWithPath: v.vault + "/gc/" + olderName))
        // A live writer (this test process stands in for it) that began between the two plans.
        try FileManager.default.createDirectory(atPath: v.vault + "/locks", withIntermediateDirectories: true)
        try """
            {"host":"\(ProcessInfo.processInfo.hostName)","kind":"writer","pid":\(getpid()),\
            "refreshed":"\(Timestamp.format(Date()))","started":"2021-01-01T00:00:00.000Z","version":1}
            """.write(toFile: v.vault + "/locks/w-00000000000000cc", atomically: true, encoding: .utf8)
        g = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertEqual(g["packsDeleted"] as? Int, 0, "the older plan deleted packs the newer one holds for a writer")
        XCTAssertEqual(v.files("packs").count, packs)
        // The older plan is done; the newer one waits (and this prune planned the same
        // unindexed packs once more).
        XCTAssertFalse(v.files("gc").contains(olderName))
        XCTAssertTrue(v.files("gc").contains(newer))

        // The writer is gone: the newer plan deletes them.
        try FileManager.default.removeItem(atPath: v.vault + "/locks/w-00000000000000cc")
        g = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertEqual(g["packsDeleted"] as? Int, planned.count)
        XCTAssertEqual(v.files("gc"), [])
        XCTAssertEqual(Array(try v.get(kept).check("get").stdout), generated(3 << 20, seed: 2))
        try assertClean(try v.check(), "after both plans ran")
    }

    func testDeadWritersMarkersAreRemovedAndDoNotBlock() throws {
        let v = try makeVault(policy: "keep_last = 1")
        _ = try v.put(generated(2 << 20, seed: 1), source: "s")
        _ = try v.put(generated(2 << 20, seed: 2), source: "s")
        // A writer of this host whose process is gone (SIGKILLed mid-put, say).
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        try FileManager.default.createDirectory(atPath: v.vault + "/locks", withIntermediateDirectories: true)
        try """
            {"host":"\(ProcessInfo.processInfo.hostName)","kind":"writer","pid":\(dead.processIdentifier),\
            "refreshed":"\(Timestamp.format(Date()))","started":"2020-01-01T00:00:00.000Z","version":1}
            """.write(toFile: v.vault + "/locks/w-00000000000000bb", atomically: true, encoding: .utf8)
        let g = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertEqual(g["deadMarkersRemoved"] as? Int, 1)
        XCTAssertGreaterThan(g["packsDeleted"] as? Int ?? 0, 0)
        XCTAssertEqual(v.files("locks"), [])
    }

    func testOnlyOnePruneAtATime() throws {
        let v = try makeVault()
        _ = try v.put(generated(1 << 20, seed: 1), source: "s")
        try FileManager.default.createDirectory(atPath: v.vault + "/locks", withIntermediateDirectories: true)
        try """
            {"host":"\(ProcessInfo.processInfo.hostName)","kind":"prune","pid":\(getpid()),\
            "refreshed":"\(Timestamp.format(Date()))","started":"\(Timestamp.format(Date()))","version":1}
            """.write(toFile: v.vault + "/locks/prune", atomically: true, encoding: .utf8)
        let r = try v.run(["prune", "--config", v.config])
        XCTAssertEqual(r.status, 18, r.stderr)
        XCTAssertTrue(r.stderr.contains("another prune is running"), r.stderr)
        // A dry run takes no lock.
        XCTAssertEqual(try v.run(["prune", "--config", v.config, "--dry-run"]).status, 0)
    }

    /// The race the protocol is for: a backup dedupes against blobs that a prune, running
    /// meanwhile, finds garbage (their only backup was just removed) and takes out of the
    /// index. The backup's marker keeps the packs; at commit it names the blobs again.
    func testBackupReusingBlobsThatAPruneCollectsStaysRestorable() throws {
        let v = try makeVault(policy: "keep_last = 1")
        let shared = generated(3 << 20, seed: 21)
        _ = try v.put(shared, source: "s")
        _ = try v.put(generated(1 << 20, seed: 22), source: "s")

        let vault = try v.open()
        let session = try BackupSession(vault: vault)  // marker written, index (with `shared`'s blobs) loaded

        // The prune removes the first backup; its blobs are garbage, out of the index, and
        // their packs wait for this writer.
        let report = try prune(v, ["--grace", "0s"])
        let g = try gc(report)
        XCTAssertGreaterThan(g["packsPlanned"] as? Int ?? 0, 0, "\(g)")
        XCTAssertEqual(g["packsDeleted"] as? Int, 0, "a plan ran while a writer that began before it was running")
        XCTAssertTrue(((g["pending"] as? [[String: Any]])?.first?["waitingFor"] as? String ?? "").contains("writers"), "\(g)")

        // The writer stores the same content: every blob is taken from its (old) index.
        let artifact = try session.store(name: "again", chunker: .contentDefined, bytes: shared)
        XCTAssertEqual(session.statistics.newBlobs, 0, "the test needs the writer to reuse every blob")
        let indexFiles = v.files("index").count
        let id = try session.commit(session.manifest(source: "s", artifacts: [artifact]))
        XCTAssertEqual(v.files("locks"), [], "the marker goes with the commit")
        XCTAssertEqual(v.files("index").count, indexFiles + 1, "the writer names the blobs it reused again")
        try assertClean(try v.check(), "right after the commit")

        // The next prune keeps those packs (indexed again) and deletes the rest.
        let after = try gc(try prune(v, ["--grace", "0s"]))
        XCTAssertEqual((after["pending"] as? [Any])?.count, 0, "\(after)")
        XCTAssertEqual(after["blobsReindexed"] as? Int, 0, "the writer, not the prune's safety net, should have indexed them")
        XCTAssertEqual((after["warnings"] as? [Any])?.count, 0, "\(after)")
        XCTAssertEqual(Array(try v.get(id).check("get").stdout), shared)
        try assertClean(try v.check(), "after the race")
    }
}
