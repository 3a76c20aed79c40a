import CofferMongoDB
import Foundation

/// A deterministic stream of writes to `shop.ledger`, applied to the server and to a model
/// of what the collection holds after each step, so a restore can be compared with the
/// exact state at any step. Step i: inserts, updates (a $set of an existing field, a new
/// field, an $unset, an array element) and deletes, in a fixed rotation; every step bumps
/// `lastStep` in the documents it touches. Steps start at 10 so every step finds the document
/// it updates or deletes, and so writes exactly one oplog entry.
struct Workload {
    var model: [Int64: Document] = [:]
    var step: Int64 = 10

    mutating func next(_ client: MongoClient?) throws {
        let i = step
        step += 1
        switch i % 5 {
        case 0, 1:
            let d: Document = ["_id": .int64(i), "v": .int64(i), "tags": .array([.int64(i), .int64(i + 1), .int64(i + 2)]),
                               "sub": .document(["p": .int64(1)]), "lastStep": .int64(i)]
            try client?.command("shop", ["insert": "ledger", "documents": .array([.document(d)])])
            model[i] = d
        case 2:
            let id = i - 2
            try client?.command("shop", ["update": "ledger", "updates": .array([.document([
                "q": .document(["_id": .int64(id)]),
                "u": .document(["$set": .document(["v": .int64(i * 10), "tags.1": .int64(-i), "note": .string("step \(i)"),
                                                   "lastStep": .int64(i)])])])])])
            if var d = model[id] {
                d["v"] = .int64(i * 10)
                var tags = d["tags"]!.array!
                tags[1] = .int64(-i)
                d["tags"] = .array(tags)
                d["lastStep"] = .int64(i)
                d["note"] = .string("step \(i)")
                model[id] = d
            }
        case 3:
            let id = i - 2
            try client?.command("shop", ["update": "ledger", "updates": .array([.document([
                "q": .document(["_id": .int64(id)]),
                "u": .document(["$unset": .document(["sub": .string("")]), "$set": .document(["lastStep": .int64(i)])])])])])
            if var d = model[id] {
                d["sub"] = nil
                d["lastStep"] = .int64(i)
                model[id] = d
            }
        default:
            let id = i - 4
            try client?.command("shop", ["delete": "ledger", "deletes": .array([.document(["q": .document(["_id": .int64(id)]), "limit": .int32(1)])])])
            model[id] = nil
        }
    }

    var documents: [Document] { model.keys.sorted().map { model[$0]! } }

    /// The model after `steps` steps (each step writes exactly one oplog entry).
    static func state(after steps: Int) throws -> [Document] {
        var w = Workload()
        for _ in 0..<steps { try w.next(nil) }
        return w.documents
    }
}
