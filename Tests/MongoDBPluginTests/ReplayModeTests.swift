import CofferFixtures
import CofferMongoDB
import Foundation
import XCTest

/// How a restore writes the oplog, chosen against a real SecantusDB (which has no applyOps):
/// auto picks translation and says so; a forced applyops fails before the target is touched.
final class ReplayModeTests: XCTestCase {
    /// A dump, writes after it captured as a slice, and a second SecantusDB to restore into.
    func prepared(sourceOptions: [String: String] = [:]) throws -> (MongoVault, MongoClient, SecantusServer) {
        let vault = try MongoVault(sourceOptions: sourceOptions)
        let (c, _) = try vault.dumpedThenCaptured(after: 20)
        return (vault, c, try SecantusServer())
    }

    func positions(_ json: String) throws -> [String: String] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        return try XCTUnwrap(object?["positions"] as? [String: String], json)
    }

    func testAutoTranslatesOnAServerWithoutApplyOps() throws {
        let (vault, source, target) = try prepared()
        let r = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri, "--set", "database.shop=auto", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try positions(r.stdout)["replay"], "translate")
        XCTAssertTrue(r.stderr.contains("oplog replay by translation to ordinary writes (the target has no usable applyOps (CommandNotFound"), r.stderr)
        XCTAssertEqual(try documents(MongoClient(uri: target.uri), "auto", "ledger"), try documents(source, "shop", "ledger"))

        // The plain summary names it too.
        let plain = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri, "--set", "database.shop=plain"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.contains("replay: translate"), plain.stdout)
    }

    func testForcedApplyOpsFailsBeforeWritingAnything() throws {
        let (vault, _, target) = try prepared()
        let r = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri, "--set", "database.shop=forced",
                                  "--set", "replay=applyops", "--json"])
        XCTAssertNotEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stderr.contains("replay = applyops, but the target cannot run applyOps (CommandNotFound"), r.stderr)
        XCTAssertFalse(r.stdout.contains("\"positions\""), "no restore summary for a failed restore: \(r.stdout)")
        let databases = try MongoClient(uri: target.uri).command("admin", ["listDatabases": .int32(1), "nameOnly": .bool(true)])
        let names = (databases["databases"]?.array ?? []).compactMap { $0.document?["name"]?.string }
        XCTAssertFalse(names.contains("forced"), "the target was written to: \(names)")

        let bad = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri, "--set", "database.shop=bad", "--set", "replay=fast"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("replay must be auto, applyops or translate, not 'fast'"), bad.stderr)
    }

    func testTranslateFromTheSourceOptionAsksNothing() throws {
        let (vault, source, target) = try prepared(sourceOptions: ["replay": "translate"])
        let r = try vault.coffer(["restore", "--source", "main", "--target-uri", target.uri, "--set", "database.shop=cfg", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try positions(r.stdout)["replay"], "translate")
        XCTAssertTrue(r.stderr.contains("oplog replay by translation to ordinary writes (replay = translate)"), r.stderr)
        XCTAssertEqual(try documents(MongoClient(uri: target.uri), "cfg", "ledger"), try documents(source, "shop", "ledger"))
    }

    /// The applier in applyOps mode on a server without applyOps: commands are translated
    /// (the create runs), inserts wait in a batch, and sending the batch fails loudly instead
    /// of reporting them applied.
    func testApplyOpsBatchFailureIsAnError() throws {
        let server = try SecantusServer()
        defer { try? server.stop() }
        try checkBatchFailure(MongoClient(uri: server.uri))
    }

    func checkBatchFailure(_ client: MongoClient) throws {
        let applier = OplogApplier(client: client, map: DatabaseMap(options: ["database.app": "app2"]), mode: .applyOps)
        func entry(_ i: UInt32, _ op: String, _ ns: String, _ o: Document) throws -> OplogEntry {
            try OplogEntry(["ts": .timestamp(Timestamp(t: 1_700_000_000, i: i)), "op": .string(op), "ns": .string(ns), "o": .document(o)])
        }
        try applier.apply(entry(1, "c", "app.$cmd", ["create": "items"]))
        try applier.apply(entry(2, "i", "app.items", ["_id": .int32(1)]))
        try applier.apply(entry(3, "i", "app.items", ["_id": .int32(2)]))
        XCTAssertThrowsError(try applier.finish()) {
            XCTAssertTrue("\($0)".contains("applyOps of 2 oplog entries failed"), "\($0)")
        }
        XCTAssertEqual(applier.applyOpsCommands, 0)
        XCTAssertEqual(try client.commandCursor("app2", ["listCollections": .int32(1)]).compactMap { $0["name"]?.string }, ["items"])
        XCTAssertEqual(try documents(client, "app2", "items").count, 0)
    }
}
