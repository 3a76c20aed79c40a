import CofferFixtures
import CofferMongoDB
import Foundation
import XCTest

/// Dumps of a live SecantusDB through the real `coffer` CLI, restored into a second server.
final class DumpRestoreTests: XCTestCase {
    /// A catalog to carry over: a validator, a unique and a partial index, a capped
    /// collection, a view, and a database with a name to map.
    static func seedCatalog(_ c: MongoClient) throws {
        try c.command("static", ["create": "people",
                                 "validator": .document(["$jsonSchema": .document(["bsonType": "object", "required": .array(["name"])])])])
        var docs: [BSON] = []
        for n in 0..<3000 {
            docs.append(.document(["_id": .int32(Int32(n)), "name": .string("person \(n)"), "age": .int32(Int32(n % 90)),
                                   "bio": .string(String(repeating: "x", count: n % 200))]))
        }
        try c.command("static", ["insert": "people", "documents": .array(docs)])
        try c.command("static", ["createIndexes": "people", "indexes": .array([
            .document(["key": .document(["name": .int32(1)]), "name": "name_1", "unique": .bool(true)]),
            .document(["key": .document(["age": .int32(-1)]), "name": "age_partial",
                       "partialFilterExpression": .document(["age": .document(["$gt": .int32(17)])])]),
        ])])
        try c.command("static", ["create": "events", "capped": .bool(true), "size": .int32(1 << 20)])
        try c.command("static", ["insert": "events", "documents": .array((0..<50).map { .document(["_id": .int32(Int32($0))]) })])
        try c.command("static", ["create": "adults", "viewOn": "people",
                                 "pipeline": .array([.document(["$match": .document(["age": .document(["$gte": .int32(18)])])])])])
        try c.command("shop", ["create": "ledger"])
    }

    func collectionInfo(_ c: MongoClient, _ db: String) throws -> [String: Document] {
        var out: [String: Document] = [:]
        for info in try c.commandCursor(db, ["listCollections": .int32(1)]) {
            out[info["name"]!.string!] = info
        }
        return out
    }

    func indexNames(_ c: MongoClient, _ db: String, _ coll: String) throws -> [String] {
        try c.commandCursor(db, ["listIndexes": .string(coll)]).compactMap { $0["name"]?.string }.sorted()
    }

    /// The dump runs while a writer keeps changing shop.ledger; the restore must hold exactly
    /// the ledger as it was after the last write at or before the dump's consistent
    /// Timestamp (counted in the source's own oplog), and everything else as it is.
    func testDumpUnderWriteLoadRestoresTheConsistentPoint() throws {
        let vault = try MongoVault(sourceOptions: ["dump_connections": "3"])
        let source = try vault.client()
        try DumpRestoreTests.seedCatalog(source)

        let stop = StopFlag()
        let writer = WriterThread(uri: vault.server.uri, stop: stop)
        writer.start()
        // The dump must overlap writes: wait until some have happened.
        try waitUntil("the writer has written") { writer.steps > 50 }
        let r = try vault.coffer(["backup", "--source", "main"])
        let stepsWhileDumping = writer.steps
        stop.set()
        try writer.join()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertGreaterThan(writer.steps, stepsWhileDumping - 1)

        let positions = try vault.newestPositions()
        let consistent = try XCTUnwrap(positions["ts"].flatMap(Timestamp.init))
        let start = try XCTUnwrap(positions["start_ts"].flatMap(Timestamp.init))
        XCTAssertLessThan(start, consistent, "writes went on during the dump, so its oplog part is not empty")
        let ledgerEntries = try source.find("local", "oplog.rs", filter: ["ns": "shop.ledger", "op": .document(["$in": .array(["i", "u", "d"])]),
                                                                      "ts": .document(["$lte": .timestamp(consistent)])])
        var steps = 0
        while try ledgerEntries.next({ _ in }) != nil { steps += 1 }
        XCTAssertLessThan(steps, writer.steps, "the writer went on after the consistent point")

        let target = try SecantusServer()
        let t = try MongoClient(uri: target.uri)
        try vault.run("restore", "--source", "main", "--target-uri", target.uri, "--set", "database.static=static2")

        XCTAssertEqual(try documents(t, "shop", "ledger"), try Workload.state(after: steps))
        XCTAssertEqual(try documents(t, "static2", "people"), try documents(source, "static", "people"))
        XCTAssertEqual(try documents(t, "static2", "events"), try documents(source, "static", "events"))
        XCTAssertEqual(try documents(t, "static2", "adults").count, try documents(source, "static", "adults").count)
        XCTAssertEqual(try indexNames(t, "static2", "people"), ["_id_", "age_partial", "name_1"])
        let restored = try collectionInfo(t, "static2")
        let original = try collectionInfo(source, "static")
        XCTAssertEqual(restored["people"]?["options"], original["people"]?["options"], "the validator came back")
        XCTAssertEqual(restored["events"]?["options"], original["events"]?["options"], "capped with its size")
        XCTAssertEqual(restored["adults"]?["options"], original["adults"]?["options"], "the view and its pipeline")
        // The unique index is enforced, and the validator too.
        XCTAssertThrowsError(try t.command("static2", ["insert": "people", "documents": .array([.document(["_id": .int32(-1), "name": "person 1"])])]))
        XCTAssertThrowsError(try t.command("static2", ["insert": "people", "documents": .array([.document(["_id": .int32(-2)])])]))

        // A second restore onto the same names is refused unless --force.
        let again = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri, "--set", "database.static=static2"])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("already exists"), again.stderr)
        try vault.run("restore", "--source", "main", "--target-uri", target.uri, "--set", "database.static=static2", "--force")
        XCTAssertEqual(try documents(t, "static2", "people").count, 3000)
    }
}

/// Polls `condition` every 20 ms until it holds, failing after `seconds`.
func waitUntil(_ what: String, seconds: Double = 60, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while try !condition() {
        guard Date() < deadline else { throw FixtureError("timed out waiting until \(what)") }
        usleep(20_000)
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Runs the Workload on its own connection until stopped.
final class WriterThread: @unchecked Sendable {
    let uri: String
    let stop: StopFlag
    private let lock = NSLock()
    private var count = 0
    private var failure: Error?
    private let done = DispatchSemaphore(value: 0)

    init(uri: String, stop: StopFlag) {
        self.uri = uri
        self.stop = stop
    }

    var steps: Int { lock.lock(); defer { lock.unlock() }; return count }

    func start() {
        Thread.detachNewThread { [self] in
            defer { done.signal() }
            do {
                let client = try MongoClient(uri: uri)
                var w = Workload()
                while !stop.isSet {
                    try w.next(client)
                    lock.lock(); count += 1; lock.unlock()
                }
            } catch {
                lock.lock(); failure = error; lock.unlock()
            }
        }
    }

    func join() throws {
        done.wait()
        if let failure { throw failure }
    }
}
