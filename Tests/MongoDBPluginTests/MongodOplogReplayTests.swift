import CofferFixtures
import CofferMongoDB
import XCTest

/// Oplog entries in mongod's own shapes (which SecantusDB never writes): `$v: 2` diffs,
/// transactions as applyOps with partialTxn, prepared transactions committed and aborted,
/// single-spec createIndexes, renameCollection. Replayed onto a real SecantusDB (which has
/// no applyOps) through OplogApplier, under a renamed database, and checked document by
/// document. The entry shapes follow mongod's oplog (mongo src/mongo/db/repl/oplog_entry.idl
/// and the transaction entries of src/mongo/db/transaction/transaction_participant.cpp).
final class MongodOplogReplayTests: XCTestCase {
    var server: SecantusServer!
    var client: MongoClient!
    var applier: OplogApplier!
    var tick: UInt32 = 0

    override func setUpWithError() throws {
        server = try SecantusServer()
        client = try MongoClient(uri: server.uri)
        applier = OplogApplier(client: client, map: DatabaseMap(options: ["database.app": "app2"]))
    }

    override func tearDownWithError() throws {
        // XCTest keeps test case objects to the end of the run: stop the server now.
        applier = nil
        client = nil
        try server?.stop()
        server = nil
    }

    func entry(_ op: String, _ ns: String, _ o: Document, o2: Document? = nil, txn: (Int32, Int64)? = nil) throws -> OplogEntry {
        tick += 1
        var d: Document = ["ts": .timestamp(Timestamp(t: 1_700_000_000, i: tick)), "t": .int64(1), "op": .string(op), "ns": .string(ns), "o": .document(o)]
        if let o2 { d["o2"] = .document(o2) }
        if let (session, number) = txn {
            d["lsid"] = .document(["id": .binary(subtype: 4, [UInt8](repeating: UInt8(session), count: 16))])
            d["txnNumber"] = .int64(number)
        }
        d["wall"] = .datetime(1_700_000_000_000 + Int64(tick))
        return try OplogEntry(d)
    }

    func items() throws -> [Document] { try documents(client, "app2", "items") }

    func testMongodShapedEntriesReplayAsOrdinaryWrites() throws {
        try applier.apply(entry("c", "app.$cmd", ["create": "items", "idIndex": .document(["v": .int32(2), "key": .document(["_id": .int32(1)]), "name": "_id_"])]))
        try applier.apply(entry("i", "app.items", ["_id": .int32(1), "a": .int32(1), "arr": .array([.int32(1), .int32(2), .int32(3)]),
                                                   "obj": .document(["x": .int32(1), "y": .int32(2)])]))
        // A $v: 2 diff: update a in place, insert b at the end, delete obj.y, cut arr to 2 and set arr.1.
        try applier.apply(entry("u", "app.items", ["$v": .int32(2), "diff": .document([
            "u": .document(["a": .int32(2)]), "i": .document(["b": .int32(5)]),
            "sobj": .document(["d": .document(["y": .bool(false)])]),
            "sarr": .document(["a": .bool(true), "l": .int32(2), "u1": .int32(9)])])], o2: ["_id": .int32(1)]))
        try applier.finish()
        XCTAssertEqual(try items(), [["_id": .int32(1), "a": .int32(2), "arr": .array([.int32(1), .int32(9)]),
                                      "obj": .document(["x": .int32(1)]), "b": .int32(5)]])

        // mongod's single-spec createIndexes form.
        try applier.apply(entry("c", "app.$cmd", ["createIndexes": "items", "v": .int32(2), "key": .document(["a": .int32(1)]), "name": "a_1"]))
        try applier.finish()
        XCTAssertEqual(try client.commandCursor("app2", ["listIndexes": "items"]).compactMap { $0["name"]?.string }.sorted(), ["_id_", "a_1"])

        // A large transaction: two partial applyOps entries, then the last one.
        try applier.apply(entry("c", "admin.$cmd", ["applyOps": .array([
            .document(["op": "i", "ns": "app.items", "o": .document(["_id": .int32(2)])])]), "partialTxn": .bool(true)], txn: (1, 1)))
        try applier.apply(entry("c", "admin.$cmd", ["applyOps": .array([
            .document(["op": "i", "ns": "app.items", "o": .document(["_id": .int32(3)])])]), "partialTxn": .bool(true)], txn: (1, 1)))
        try applier.finish()
        XCTAssertEqual(try items().count, 1, "nothing of an unfinished transaction is applied")
        try applier.apply(entry("c", "admin.$cmd", ["applyOps": .array([
            .document(["op": "u", "ns": "app.items", "o": .document(["$v": .int32(2), "diff": .document(["u": .document(["a": .int32(3)])])]),
                       "o2": .document(["_id": .int32(1)])])]), "count": .int64(3)], txn: (1, 1)))
        try applier.finish()
        XCTAssertEqual(try items().map { $0["_id"] }, [.int32(1), .int32(2), .int32(3)])
        XCTAssertEqual(try items()[0]["a"], .int32(3))

        // Prepared, then committed: applied at the commit entry.
        try applier.apply(entry("c", "admin.$cmd", ["applyOps": .array([
            .document(["op": "d", "ns": "app.items", "o": .document(["_id": .int32(2)])])]), "prepare": .bool(true)], txn: (2, 5)))
        try applier.finish()
        XCTAssertEqual(try items().count, 3, "a prepared transaction waits for its commit")
        try applier.apply(entry("c", "admin.$cmd", ["commitTransaction": .int32(1),
                                                    "commitTimestamp": .timestamp(Timestamp(t: 1_700_000_000, i: tick))], txn: (2, 5)))
        try applier.finish()
        XCTAssertEqual(try items().map { $0["_id"] }, [.int32(1), .int32(3)])

        // Prepared, then aborted: never applied.
        try applier.apply(entry("c", "admin.$cmd", ["applyOps": .array([
            .document(["op": "d", "ns": "app.items", "o": .document(["_id": .int32(3)])])]), "prepare": .bool(true)], txn: (3, 7)))
        try applier.apply(entry("c", "admin.$cmd", ["abortTransaction": .int32(1)], txn: (3, 7)))
        try applier.finish()
        XCTAssertEqual(try items().map { $0["_id"] }, [.int32(1), .int32(3)])

        // A transaction whose second write fails applies nothing.
        XCTAssertThrowsError(try applier.apply(entry("c", "admin.$cmd", ["applyOps": .array([
            .document(["op": "i", "ns": "app.items", "o": .document(["_id": .int32(10)])]),
            .document(["op": "u", "ns": "app.items", "o": .document(["$inc": .document(["arr": .int32(1)])]), "o2": .document(["_id": .int32(1)])]),
        ])], txn: (4, 1))))
        XCTAssertEqual(try items().map { $0["_id"] }, [.int32(1), .int32(3)], "all or nothing")

        // renameCollection between namespaces of the mapped database.
        try applier.apply(entry("c", "app.$cmd", ["renameCollection": "app.items", "to": "app.things", "stayTemp": .bool(false)]))
        try applier.finish()
        XCTAssertEqual(try documents(client, "app2", "things").map { $0["_id"] }, [.int32(1), .int32(3)])
        XCTAssertEqual(try documents(client, "app", "things").count, 0, "the source's database name is not written")
    }
}
