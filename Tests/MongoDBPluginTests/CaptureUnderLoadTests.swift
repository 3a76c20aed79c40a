import CofferFixtures
import CofferMongoDB
import Foundation
import XCTest

/// A capture that opens its tailable cursor while writes go on misses none of them.
/// SecantusDB answers such a cursor's first batch from one scan of the oplog and tails only
/// from the newest entry visible after that scan, so writes committed during the scan would
/// be in neither (OplogCapture's TailSource reads them by a plain query). With a large oplog
/// the scan takes long enough that a write loop always lands in it.
final class CaptureUnderLoadTests: XCTestCase {
    /// Inserts `{_id: n}` into shop.live, one command each, until stopped.
    final class Writer: @unchecked Sendable {
        private let lock = NSLock()
        private var stopRequested = false
        private var count = 0
        private var failure: Error?
        private let done = DispatchSemaphore(value: 0)

        init(uri: String) {
            Thread.detachNewThread { [self] in
                do {
                    let c = try MongoClient(uri: uri)
                    var n: Int32 = 0
                    while !lock.withLock({ stopRequested }) {
                        try c.command("shop", ["insert": "live", "documents": .array([.document(["_id": .int32(n)])])])
                        n += 1
                        lock.withLock { count = Int(n) }
                    }
                } catch {
                    lock.withLock { failure = error }
                }
                done.signal()
            }
        }

        var written: Int { lock.withLock { count } }

        func stop() throws {
            lock.withLock { stopRequested = true }
            done.wait()
            if let failure = lock.withLock({ failure }) { throw failure }
        }
    }

    func testCaptureMissesNothingWrittenWhileItsCursorOpens() throws {
        let vault = try MongoVault(sourceOptions: ["capture_slice_seconds": "1"])
        let c = try vault.client()
        // 100,000 oplog entries (the default cap): SecantusDB's scan and filtering of them when
        // the capture opens its cursor last long enough for the writer to commit meanwhile.
        for batch in 0..<100 {
            let docs: [BSON] = (0..<1000).map { .document(["_id": .int32(Int32(batch * 1000 + $0)), "pad": .string("x")]) }
            try c.command("shop", ["insert": "bulk", "documents": .array(docs)])
        }
        try vault.run("backup", "--source", "main")
        // A first capture, so the next one resumes: its cursor then filters by ts, and
        // SecantusDB matches every entry against that filter between its scan and the start
        // of its tail, which widens the window. (A --once capture stores only up to the newest
        // entry at its start, before the window: a following capture is what can lose entries.)
        try vault.run("capture", "--source", "main", "--once")

        let writer = Writer(uri: vault.server.uri)
        var last = Timestamp(t: 0, i: 0)
        do {
            try waitUntil("the writer is writing") { writer.written >= 20 }
            let capture = try BackgroundCoffer(vault, ["capture", "--source", "main", "--json"])
            defer { capture.stop() }
            try waitUntil("the capture stored a slice", seconds: 120) { capture.capturedThrough() > Timestamp(t: 0, i: 0) }
            let during = try newestTimestamp(c)
            try waitUntil("the capture passed \(during)", seconds: 120) { capture.capturedThrough() >= during }
            try writer.stop()
            let newest = try newestTimestamp(c)
            try waitUntil("the capture stored \(newest)", seconds: 120) { capture.capturedThrough() >= newest }
            capture.stop()
            last = capture.capturedThrough()
        } catch {
            try? writer.stop()
            throw error
        }

        // Every insert into shop.live the source's oplog holds up to the captured end.
        let cursor = try c.find("local", "oplog.rs", filter: ["ns": "shop.live", "op": "i", "ts": .document(["$lte": .timestamp(last)])])
        var expected: [BSON] = []
        while let e = try cursor.nextDocument() { expected.append(try XCTUnwrap(e["o"]?.document?["_id"])) }
        XCTAssertGreaterThan(expected.count, 20)

        let target = try SecantusServer()
        try vault.run("restore", "--source", "main", "--target-uri", target.uri)
        let restored = try documents(try MongoClient(uri: target.uri), "shop", "live").compactMap { $0["_id"] }
        let missing = Set(expected.compactMap(\.int)).subtracting(restored.compactMap(\.int))
        XCTAssertTrue(missing.isEmpty, "\(missing.count) of \(expected.count) inserts missing (committed while the capture opened its cursor): \(missing.sorted().prefix(10))")
        XCTAssertEqual(restored, expected.sorted { ($0.int ?? 0) < ($1.int ?? 0) }, "restored exactly the captured inserts")
    }
}
