import CofferMongoDB
import XCTest

/// The applyOps commands built from oplog entries. Entries are written as mongod writes them
/// (MongoDB's oplog entry format: ts, t, v, op, ns, ui, o, o2, wall; retryable writes with
/// lsid, txnNumber, stmtId, prevOpTime; a transaction as one `c` entry on admin.$cmd whose
/// `o.applyOps` holds the operations), and the expected operations in the shape MongoDB's
/// applyOps reference and its apply_ops tests send: `{op, ns, o, o2}`.
final class ApplyOpsBuilderTests: XCTestCase {
    let builder = ApplyOpsBuilder(map: DatabaseMap(options: ["database.app": "app2"]))
    let uuid = BSON.binary(subtype: 4, [UInt8](repeating: 0xAB, count: 16))
    let wall = BSON.datetime(1_700_000_000_000)

    func entry(_ op: String, _ ns: String, _ o: Document, o2: Document? = nil) -> Document {
        var d: Document = ["ts": .timestamp(Timestamp(t: 1_700_000_000, i: 1)), "t": .int64(1), "v": .int32(2),
                           "op": .string(op), "ns": .string(ns), "ui": uuid, "o": .document(o)]
        if let o2 { d["o2"] = .document(o2) }
        d["wall"] = wall
        return d
    }

    func testCrudEntriesLoseUiAndTheirOwnPositionsAndAreRenamed() {
        XCTAssertEqual(builder.shape(entry("i", "app.items", ["_id": .int32(1), "a": .int32(1)], o2: ["_id": .int32(1)])),
                       .op(["op": "i", "ns": "app2.items", "o": .document(["_id": .int32(1), "a": .int32(1)]),
                            "o2": .document(["_id": .int32(1)])]))
        XCTAssertEqual(builder.shape(entry("u", "app.items", ["$v": .int32(2), "diff": .document(["u": .document(["a": .int32(2)])])],
                                           o2: ["_id": .int32(1)])),
                       .op(["op": "u", "ns": "app2.items", "o": .document(["$v": .int32(2), "diff": .document(["u": .document(["a": .int32(2)])])]),
                            "o2": .document(["_id": .int32(1)])]))
        // A replacement: the whole document.
        XCTAssertEqual(builder.shape(entry("u", "app.items", ["_id": .int32(1), "a": .int32(3)], o2: ["_id": .int32(1)])),
                       .op(["op": "u", "ns": "app2.items", "o": .document(["_id": .int32(1), "a": .int32(3)]), "o2": .document(["_id": .int32(1)])]))
        XCTAssertEqual(builder.shape(entry("d", "app.items", ["_id": .int32(1)])),
                       .op(["op": "d", "ns": "app2.items", "o": .document(["_id": .int32(1)])]))
        // A database not renamed keeps its name; ui still goes (the target's collection is new).
        XCTAssertEqual(builder.shape(entry("d", "other.things.v1", ["_id": "k"])),
                       .op(["op": "d", "ns": "other.things.v1", "o": .document(["_id": "k"])]))
        // A retryable write's session fields are the source's, not the target's.
        var retryable = entry("i", "app.items", ["_id": .int32(7)])
        retryable["lsid"] = .document(["id": uuid, "uid": .binary(subtype: 0, [UInt8](repeating: 1, count: 32))])
        retryable["txnNumber"] = .int64(4)
        retryable["stmtId"] = .int32(0)
        retryable["prevOpTime"] = .document(["ts": .timestamp(Timestamp(t: 0, i: 0)), "t": .int64(-1)])
        XCTAssertEqual(builder.shape(retryable), .op(["op": "i", "ns": "app2.items", "o": .document(["_id": .int32(7)])]))
        // Old oplogs' upsert flag on updates stays.
        var upsert = entry("u", "app.items", ["_id": .int32(8)], o2: ["_id": .int32(8)])
        upsert["b"] = .bool(true)
        XCTAssertEqual(builder.shape(upsert), .op(["op": "u", "ns": "app2.items", "o": .document(["_id": .int32(8)]),
                                                   "o2": .document(["_id": .int32(8)]), "b": .bool(true)]))
    }

    func testWhatApplyOpsCannotTakeIsTranslatedOrSkipped() {
        // SecantusDB's change-stream shaped diff: mongod's applier knows only its own diff.
        XCTAssertEqual(builder.shape(entry("u", "app.items", ["$v": .int32(2), "diff": .document([
            "updatedFields": .document(["a": .int32(1)]), "removedFields": .array([])])], o2: ["_id": .int32(1)])), .translate)
        // Modifier updates without $v: 2 ($v: 1): refused by applyOps since 6.1.
        XCTAssertEqual(builder.shape(entry("u", "app.items", ["$set": .document(["a": .int32(1)])], o2: ["_id": .int32(1)])), .translate)
        XCTAssertEqual(builder.shape(entry("u", "app.items", ["$v": .int32(1), "$set": .document(["a": .int32(1)])], o2: ["_id": .int32(1)])), .translate)
        // Commands, including a transaction's applyOps entry, go through the applier.
        XCTAssertEqual(builder.shape(entry("c", "app.$cmd", ["create": "items"])), .translate)
        XCTAssertEqual(builder.shape(entry("c", "admin.$cmd", ["applyOps": .array([])])), .translate)
        XCTAssertEqual(builder.shape(entry("n", "", ["msg": "periodic noop"])), .skip)
        XCTAssertEqual(builder.shape(entry("i", "config.system.sessions", ["_id": .int32(1)])), .skip)
        XCTAssertEqual(builder.shape(entry("i", "app.system.views", ["_id": "app.v"])), .skip)
    }

    /// A transaction as mongod logs it (one `c` entry, `o.applyOps`, lsid and txnNumber on the
    /// entry): its operations become one applyOps command, renamed and without ui.
    func testTransactionBecomesOneApplyOpsCommand() throws {
        var txn = entry("c", "admin.$cmd", ["applyOps": .array([
            .document(["op": "i", "ns": "app.items", "ui": uuid, "o": .document(["_id": .int32(2)]), "o2": .document(["_id": .int32(2)])]),
            .document(["op": "u", "ns": "app.items", "ui": uuid, "o": .document(["$v": .int32(2), "diff": .document(["i": .document(["b": .int32(1)])])]),
                       "o2": .document(["_id": .int32(1)])]),
            .document(["op": "d", "ns": "shop.orders", "ui": uuid, "o": .document(["_id": .int32(9)])]),
        ])])
        txn["lsid"] = .document(["id": uuid])
        txn["txnNumber"] = .int64(3)
        txn["prevOpTime"] = .document(["ts": .timestamp(Timestamp(t: 0, i: 0)), "t": .int64(-1)])
        let inner = try XCTUnwrap(txn["o"]?.document?["applyOps"]?.array).compactMap(\.document)
        let ops = try XCTUnwrap(builder.transaction(inner))
        XCTAssertEqual(builder.command(ops), [
            "applyOps": .array([
                .document(["op": "i", "ns": "app2.items", "o": .document(["_id": .int32(2)]), "o2": .document(["_id": .int32(2)])]),
                .document(["op": "u", "ns": "app2.items", "o": .document(["$v": .int32(2), "diff": .document(["i": .document(["b": .int32(1)])])]),
                           "o2": .document(["_id": .int32(1)])]),
                .document(["op": "d", "ns": "shop.orders", "o": .document(["_id": .int32(9)])]),
            ]),
            "bypassDocumentValidation": .bool(true),
        ])
        // A transaction holding something applyOps cannot take is translated whole.
        XCTAssertNil(builder.transaction(inner + [["op": "c", "ns": "app.$cmd", "o": .document(["create": "more"])]]))
    }

    func testReplayOptionIsChecked() throws {
        // No connection is made for these: the option is refused, or translate needs no question.
        let client = try MongoClient(uri: "mongodb://127.0.0.1:1/?directConnection=true")
        XCTAssertThrowsError(try ReplayMode.choose(option: "fast", target: client)) {
            XCTAssertTrue("\($0)".contains("replay must be auto, applyops or translate"), "\($0)")
        }
        XCTAssertEqual(try ReplayMode.choose(option: "translate", target: client).mode, .translate)
    }
}
