import CofferFixtures
import CofferVault
import Foundation
import Synchronization
import XCTest

/// Writers and prunes at the same time, all real `coffer` processes, for many rounds. In
/// each round a writer makes a block garbage on purpose: it stores the block as a backup of
/// a scratch source that keeps only its newest backup, starts storing it again under a
/// source no policy touches (deduping against the scratch backup's blobs), then adds a
/// newer scratch backup, so that the next prune removes the first; the kept backup holds
/// its commit back until two prunes have run: the collector takes the block out of the index under a live writer,
/// which is the race the protocol is for. A third writer puts log-like unique streams.
/// Afterwards every backup that should exist restores byte for byte, each scratch source
/// kept exactly its newest backup, and the vault checks clean with --read-data.
final class ConcurrentPruneTests: XCTestCase {
    static let block = 1536 << 10

    func testWritersAndPrunesTogetherLoseNothing() throws {
        let v = try PruneVault()
        // All writers run on this host's clock: no skew to allow for, so a plan waits only
        // for the writers that began before it (with the default 5 minutes, every writer of
        // this test would hold every plan back).
        try v.writeConfig("""
            [prune]
            clock_skew = "0s"

            [source.scratch0]
            engine = "stream"
            [source.scratch0.retention]
            keep_last = 1

            [source.scratch1]
            engine = "stream"
            [source.scratch1.retention]
            keep_last = 1
            """)
        let rounds = 8
        let stored = Mutex<[String: (source: String, bytes: [UInt8])]>([:])
        let failures = Mutex<[String]>([])
        let writersDone = Mutex(0)
        let prunesDone = Mutex(0)
        let group = DispatchGroup()
        @Sendable func awaitPrunes(_ count: Int) {
            let seen = prunesDone.withLock { $0 }
            let deadline = Date().addingTimeInterval(120)
            while prunesDone.withLock({ $0 }) < seen + count, Date() < deadline { usleep(20_000) }
        }

        for w in 0..<2 {
            DispatchQueue.global().async(group: group) {
                defer { writersDone.withLock { $0 += 1 } }
                for n in 0..<rounds {
                    let block = generated(ConcurrentPruneTests.block, seed: UInt64(1000 * (w + 1) + n))
                    let bytes = block + generated(64 << 10, seed: UInt64(90_000 + 1000 * w + n))
                    do {
                        // The block as a scratch backup: its only backup, the newest for now.
                        _ = try v.put(block, source: "scratch\(w)")
                        // The block again, kept: once the pipe took the block, the writer has
                        // loaded the index and deduped most of it against the scratch backup.
                        let newest = generated(4096, seed: UInt64(70_000 + 1000 * w + n))
                        let newestID = Mutex<Result<String, any Error>?>(nil)
                        let running = try v.start(["put", "--source", "kept\(w)"]) { fd in
                            writeAll(fd, block)
                            // Now a newer scratch backup: the policy drops the block's, and the
                            // next prune takes the block out of the index under this writer.
                            newestID.withLock { $0 = Result { try v.put(newest, source: "scratch\(w)") } }
                            awaitPrunes(2)
                            writeAll(fd, Array(bytes[ConcurrentPruneTests.block...]))
                        }
                        let r = running.finish()
                        guard r.status == 0 else { throw FixtureError("put exited \(r.status): \(r.stderr)") }
                        stored.withLock { $0[r.text.trimmingCharacters(in: .whitespacesAndNewlines)] = ("kept\(w)", bytes) }
                        let scratch = try XCTUnwrap(newestID.withLock { $0 }).get()
                        stored.withLock { $0[scratch] = ("scratch\(w)", newest) }
                    } catch {
                        failures.withLock { $0.append("writer \(w) round \(n): \(error)") }
                    }
                }
            }
        }
        // Log-like: unique content, one blob a stream, a source no policy touches.
        DispatchQueue.global().async(group: group) {
            defer { writersDone.withLock { $0 += 1 } }
            for n in 0..<(2 * rounds) {
                let bytes = generated(1 << 20, seed: UInt64(50_000 + n))
                do {
                    let r = try v.run(["put", "--source", "logs", "--chunker", "whole"], input: bytes)
                    guard r.status == 0 else { throw FixtureError("put exited \(r.status): \(r.stderr)") }
                    stored.withLock { $0[r.text.trimmingCharacters(in: .whitespacesAndNewlines)] = ("logs", bytes) }
                } catch {
                    failures.withLock { $0.append("log writer round \(n): \(error)") }
                }
            }
        }
        var prunes = 0
        var deleted = 0
        var repacked = 0
        while writersDone.withLock({ $0 }) < 3 {
            let r = try v.run(["prune", "--config", v.config, "--grace", "0s", "--repack-threshold", "0.3", "--json"])
            XCTAssertEqual(r.status, 0, "prune \(prunes + 1): \(r.stderr)")
            if r.status == 0, let gc = try r.json()["gc"] as? [String: Any] {
                deleted += gc["packsDeleted"] as? Int ?? 0
                repacked += gc["packsRepacked"] as? Int ?? 0
                XCTAssertEqual((gc["warnings"] as? [Any])?.count, 0, "\(gc)")
            }
            prunes += 1
            prunesDone.withLock { $0 += 1 }
        }
        group.wait()
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertGreaterThanOrEqual(prunes, 2 * rounds, "each kept put waits for two prunes")
        XCTAssertGreaterThan(deleted, 0, "no pack was ever collected while the writers ran")
        print("concurrent prune: \(prunes) prunes during \(5 * rounds) puts; \(deleted) packs deleted, \(repacked) repacked")

        // A last prune with nobody writing, then everything that should be there restores.
        _ = try v.run(["prune", "--config", v.config, "--grace", "0s", "--json"]).check("last prune")
        try assertClean(try v.check(), "after concurrent writers and prunes")
        let all = stored.withLock { $0 }
        let expected = Set(all.filter { !$0.value.source.hasPrefix("scratch") }.map(\.key))
        XCTAssertEqual(expected.count, 2 * rounds + 2 * rounds, "every kept and log-like put succeeded")
        let vault = try v.open()
        var want = expected
        for source in ["scratch0", "scratch1"] {
            // Exactly the policy's backup: the newest of the scratch source.
            let newest = try XCTUnwrap(try vault.backups(source: source).last)
            XCTAssertEqual(all[newest.id]?.source, source)
            want.insert(newest.id)
        }
        XCTAssertEqual(Set(v.files("manifests")), want)
        try assertRestorable(v, all, "at the end")
    }

    private func assertRestorable(_ v: PruneVault, _ stored: [String: (source: String, bytes: [UInt8])], _ when: String) throws {
        for id in v.files("manifests") {
            let r = try v.get(id)
            XCTAssertEqual(r.status, 0, "\(when): \(id) does not restore: \(r.stderr)")
            XCTAssertTrue(Array(r.stdout) == stored[id]?.bytes, "\(when): \(id) restores other bytes")
        }
    }
}
