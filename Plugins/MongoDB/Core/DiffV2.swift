/// mongod's `$v: 2` update diffs (oplog `o: {$v: 2, diff: {...}}`), applied to a document
/// the way mongod's document_diff_applier does, so a replay onto a server without applyOps
/// reads the document, applies the diff here and writes it back.
///
/// The serialized form (mongo src/mongo/db/update/document_diff_serialization.h):
/// a document diff has sections `d` {field: false} (delete), `u` {field: value} (update in
/// place, or append when absent), `i` {field: value} (insert: moved or added at the end) and
/// `s<field>` subdiffs; an array diff is `{a: true, l: newLength?, u<index>: value,
/// s<index>: subdiff}`. Where the pre-image does not have the expected shape (a subdiff for a
/// scalar) the field becomes null: a later entry of the oplog rewrites it.
public enum DiffV2 {
    public static func apply(_ diff: Document, to document: Document) throws -> Document {
        guard diff["a"] == nil else { throw MongoError("an array diff at the top of an update diff") }
        guard !diff.isEmpty else { throw MongoError("an empty update diff") }
        return try applyDocument(diff, to: document)
    }

    static func applyDocument(_ diff: Document, to pre: Document) throws -> Document {
        var deletes = Set<String>()
        var updates: [(String, BSON)] = []
        var inserts: [(String, BSON)] = []
        var subdiffs: [String: Document] = [:]
        var seen = Set<String>()
        func claim(_ f: String) throws {
            guard seen.insert(f).inserted else { throw MongoError("field \(f) appears twice in an update diff") }
        }
        for (key, value) in diff.fields {
            switch key {
            case "d":
                for f in value.document?.keys ?? [] { try claim(f); deletes.insert(f) }
            case "u":
                for (f, v) in value.document?.fields ?? [] { try claim(f); updates.append((f, v)) }
            case "i":
                for (f, v) in value.document?.fields ?? [] { try claim(f); inserts.append((f, v)) }
            case let k where k.hasPrefix("s"):
                let f = String(k.dropFirst())
                try claim(f)
                guard let sub = value.document else { throw MongoError("subdiff \(k) is not a document") }
                subdiffs[f] = sub
            case "b":
                throw MongoError("binary diffs (section b) are not supported")
            default:
                throw MongoError("unknown update diff section \(key)")
            }
        }
        let updateIndex = Dictionary(updates.enumerated().map { ($1.0, $0) }, uniquingKeysWith: { a, _ in a })
        let insertNames = Set(inserts.map(\.0))
        var written = Set<String>()
        var out = Document()
        for (f, v) in pre.fields {
            if deletes.contains(f) || insertNames.contains(f) { continue }
            if let u = updateIndex[f] {
                out.append(f, updates[u].1)
                written.insert(f)
            } else if let sub = subdiffs[f] {
                out.append(f, try applySub(sub, to: v))
            } else {
                out.append(f, v)
            }
        }
        for (f, v) in updates where !written.contains(f) { out.append(f, v) }
        for (f, v) in inserts { out.append(f, v) }
        return out
    }

    /// A subdiff applied to the value it names: a document diff to a document, an array diff
    /// to an array; any other pairing leaves null in the field's place.
    static func applySub(_ diff: Document, to value: BSON) throws -> BSON {
        let isArrayDiff = diff["a"]?.bool == true
        switch (isArrayDiff, value) {
        case (false, .document(let d)): return .document(try applyDocument(diff, to: d))
        case (true, .array(let a)): return .array(try applyArray(diff, to: a))
        default: return .null
        }
    }

    static func applyArray(_ diff: Document, to pre: [BSON]) throws -> [BSON] {
        var resize: Int?
        var updates: [Int: BSON] = [:]
        var subdiffs: [Int: Document] = [:]
        for (key, value) in diff.fields {
            if key == "a" { continue }
            if key == "l" {
                guard let n = value.int, n >= 0 else { throw MongoError("bad array length in an update diff") }
                resize = Int(n)
                continue
            }
            guard let kind = key.first, let index = Int(key.dropFirst()), index >= 0 else {
                throw MongoError("unknown array diff entry \(key)")
            }
            switch kind {
            case "u": updates[index] = value
            case "s":
                guard let sub = value.document else { throw MongoError("array subdiff \(key) is not a document") }
                subdiffs[index] = sub
            default: throw MongoError("unknown array diff entry \(key)")
            }
        }
        let highest = (Array(updates.keys) + Array(subdiffs.keys)).max().map { $0 + 1 } ?? 0
        let length = resize ?? max(pre.count, highest)
        var out: [BSON] = []
        out.reserveCapacity(length)
        for i in 0..<length {
            if let u = updates[i] {
                out.append(u)
            } else if let sub = subdiffs[i] {
                out.append(i < pre.count ? try applySub(sub, to: pre[i]) : .null)
            } else {
                out.append(i < pre.count ? pre[i] : .null)
            }
        }
        return out
    }
}
