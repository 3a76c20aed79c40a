import CofferFixtures
import CofferMongoDB
import Foundation
import XCTest

/// Point-in-time restores: a dump, then writes captured as oplog slices, restored to several
/// Timestamps and times and compared document for document with the state at each.
final class MongoPointInTimeTests: XCTestCase {
    struct Point {
        let steps: Int
        let ts: Timestamp
        let wallMs: Int64
    }

    /// Runs `count` workload steps and returns where they ended: the step count, the newest
    /// oplog Timestamp and its wall time; then waits until the clock has passed that wall
    /// time, so later writes fall after it even at millisecond precision.
    static func phase(_ w: inout Workload, _ c: MongoClient, count: Int, stepsSoFar: inout Int) throws -> Point {
        for _ in 0..<count { try w.next(c) }
        stepsSoFar += count
        let newest = try Oplog.newest(c)
        try waitUntil("the clock passes the phase's last write") { Int64(Date().timeIntervalSince1970 * 1000) > newest.wall + 1 }
        return Point(steps: stepsSoFar, ts: newest.ts, wallMs: newest.wall)
    }

    func testRestoreToSeveralTimestampsAndTimes() throws {
        let vault = try MongoVault()
        let c = try vault.client()
        try c.command("shop", ["create": "ledger"])
        var w = Workload()
        var steps = 0
        _ = try MongoPointInTimeTests.phase(&w, c, count: 40, stepsSoFar: &steps)
        try vault.run("backup", "--source", "main")

        var points: [Point] = []
        for round in 0..<3 {
            points.append(try MongoPointInTimeTests.phase(&w, c, count: 25 + round * 10, stepsSoFar: &steps))
            // Some transactions too: all of one applies or none.
            if round == 1 { try MongoPointInTimeTests.transfer(c, step: steps) }
            try vault.run("capture", "--source", "main", "--once")
        }
        let verify = try vault.coffer(["verify", "--source", "main"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)

        let target = try SecantusServer()
        let t = try MongoClient(uri: target.uri)
        for (k, p) in points.enumerated() {
            try vault.run("restore", "--source", "main", "--target-uri", target.uri, "--to-timestamp", p.ts.description,
                          "--set", "database.shop=ts\(k)")
            XCTAssertEqual(try documents(t, "ts\(k)", "ledger"), try Workload.state(after: p.steps), "at \(p.ts)")
            try vault.run("restore", "--source", "main", "--target-uri", target.uri, "--to-time", Oplog.iso(p.wallMs),
                          "--set", "database.shop=time\(k)")
            XCTAssertEqual(try documents(t, "time\(k)", "ledger"), try Workload.state(after: p.steps), "at \(Oplog.iso(p.wallMs))")
        }
        // The transaction of round 1 (two documents) is there in full after it, absent before it.
        XCTAssertEqual(try documents(t, "ts1", "accounts").count, 0)
        XCTAssertEqual(try documents(t, "ts2", "accounts").map { $0["balance"] }, [.int32(70), .int32(30)])

        // Latest: everything captured.
        try vault.run("restore", "--source", "main", "--target-uri", target.uri, "--set", "database.shop=latest")
        XCTAssertEqual(try documents(t, "latest", "ledger"), try documents(c, "shop", "ledger"))
        XCTAssertEqual(try documents(t, "latest", "accounts"), try documents(c, "shop", "accounts"))

        // Outside the window: before the dump, after the last slice.
        let dumpPositions = try vault.newestPositions()
        let dumpTs = try XCTUnwrap(dumpPositions["ts"].flatMap(Timestamp.init))
        let before = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri,
                                       "--to-timestamp", Timestamp(t: dumpTs.t - 5, i: 1).description, "--set", "database.shop=never"])
        XCTAssertEqual(before.status, 22, before.stderr)
        XCTAssertTrue(before.stderr.contains("outside the restorable window"), before.stderr)
        let after = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri,
                                      "--to-timestamp", Timestamp(t: points.last!.ts.t + 3600, i: 1).description, "--set", "database.shop=never"])
        XCTAssertEqual(after.status, 22, after.stderr)
    }

    /// A multi-document transaction: two accounts created together.
    static func transfer(_ c: MongoClient, step: Int) throws {
        let s = try c.startSession()
        try s.startTransaction()
        try c.command("shop", ["insert": "accounts", "documents": .array([.document(["_id": .int32(1), "balance": .int32(70)])])], session: s)
        try c.command("shop", ["insert": "accounts", "documents": .array([.document(["_id": .int32(2), "balance": .int32(30)])])], session: s)
        try s.commit()
    }
}
