import Foundation

/// Replays oplog entries onto a server as ordinary writes and commands, for servers without
/// `applyOps` (SecantusDB, DocumentDB) and equally for mongod: inserts become upserts of the
/// whole document, updates are applied as the entry says (mongod's `$v: 2` diff read,
/// applied and written back; SecantusDB's updatedFields/removedFields as $set/$unset; old
/// `$set`/`$unset` as they are; a whole document as a replacement), deletes by `_id`.
/// Every write is idempotent, so entries already reflected in a dump's documents replay
/// harmlessly. Transactions apply all or nothing in one server transaction.
public final class OplogApplier {
    let client: MongoClient
    let map: DatabaseMap
    /// Entries of one transaction in SecantusDB's form (one entry per write, all with the
    /// same ts, lsid and txnNumber), gathered until an entry of another ts arrives.
    private var group: [OplogEntry] = []
    /// mongod's multi-entry transactions (applyOps with partialTxn, or prepared), by lsid+txnNumber.
    private var pending: [String: [Document]] = [:]
    public private(set) var applied = 0
    public private(set) var last: OplogEntry?

    public init(client: MongoClient, map: DatabaseMap) {
        self.client = client
        self.map = map
    }

    /// Applies one entry (or holds it back until its transaction is complete).
    public func apply(_ entry: OplogEntry) throws {
        if let first = group.first, first.ts != entry.ts || OplogApplier.txnKey(first.document) != OplogApplier.txnKey(entry.document) {
            try flushGroup()
        }
        if OplogApplier.txnKey(entry.document) != nil, ["i", "u", "d"].contains(entry.op) {
            group.append(entry)
        } else {
            try applyOne(entry.document, session: nil)
        }
        applied += 1
        last = entry
    }

    /// Applies what is held back that is complete (a trailing SecantusDB transaction group).
    /// mongod transactions with no commit entry yet stay unapplied: they had not committed.
    public func finish() throws {
        try flushGroup()
    }

    private func flushGroup() throws {
        let entries = group
        group = []
        guard !entries.isEmpty else { return }
        if entries.count == 1 {
            try applyOne(entries[0].document, session: nil)
        } else {
            try transaction(entries.map(\.document))
        }
    }

    static func txnKey(_ d: Document) -> String? {
        guard let lsid = d["lsid"], let txn = d["txnNumber"]?.int else { return nil }
        return "\(Document(dictionaryLiteral: ("l", lsid)).bytes)/\(txn)"
    }

    /// Applies inner operations in one transaction on the target: all or nothing.
    func transaction(_ ops: [Document]) throws {
        let session = try client.startSession()
        try session.startTransaction()
        do {
            for op in ops { try applyOne(op, session: session) }
            try session.commit()
        } catch {
            session.abort()
            throw error
        }
    }

    func applyOne(_ e: Document, session: MongoSession?) throws {
        let op = e["op"]?.string ?? ""
        let nsText = e["ns"]?.string ?? ""
        if op == "n" { return }
        guard let source = Namespace(ns: nsText) else { throw MongoError("oplog entry with a bad ns '\(nsText)'") }
        if Namespace.excluded(database: source.database) { return }
        if op != "c" && source.excluded { return }
        let ns = map.map(source)
        guard let o = e["o"]?.document else { throw MongoError("oplog entry without o in \(nsText)") }
        switch op {
        case "i":
            guard let id = o["_id"] else { throw MongoError("insert into \(nsText) without _id") }
            try update(ns, query: ["_id": id], update: .document(o), upsert: true, session: session)
        case "u":
            guard let query = e["o2"]?.document else { throw MongoError("update of \(nsText) without o2") }
            try applyUpdate(ns, query: query, o: o, session: session)
        case "d":
            try client.command(ns.database, ["delete": .string(ns.collection),
                                             "deletes": .array([.document(["q": .document(o), "limit": .int32(1)])])],
                               session: session)
        case "c":
            try command(source.database, o, entry: e, session: session)
        default:
            throw MongoError("unknown oplog operation '\(op)' in \(nsText)")
        }
    }

    func update(_ ns: Namespace, query: Document, update: BSON, upsert: Bool, session: MongoSession?) throws {
        // Replayed writes passed validation on the source already.
        try client.command(ns.database, ["update": .string(ns.collection),
                                         "updates": .array([.document(["q": .document(query), "u": update, "upsert": .bool(upsert)])]),
                                         "bypassDocumentValidation": .bool(true)],
                           session: session)
    }

    func applyUpdate(_ ns: Namespace, query: Document, o: Document, session: MongoSession?) throws {
        if o["$v"]?.int == 2, let diff = o["diff"]?.document {
            if diff["updatedFields"] != nil || diff["removedFields"] != nil || diff["truncatedArrays"] != nil {
                try applyFieldsForm(ns, query: query, diff: diff, session: session)
            } else {
                // mongod's diff: read the document, apply the diff, write it back.
                let cursor = try client.find(ns.database, ns.collection, filter: query, opts: ["limit": .int32(1)])
                guard let current = try cursor.nextDocument() else { return }
                let updated = try DiffV2.apply(diff, to: current)
                try update(ns, query: query, update: .document(updated), upsert: false, session: session)
            }
            return
        }
        var operators = o
        operators["$v"] = nil
        if operators.keys.contains(where: { $0.hasPrefix("$") }) {
            try update(ns, query: query, update: .document(operators), upsert: false, session: session)
        } else {
            try update(ns, query: query, update: .document(o), upsert: true, session: session)
        }
    }

    /// SecantusDB's change-stream shaped diff: arrays cut to their new size first, then
    /// updatedFields set and removedFields unset, by the server's own dotted-path rules.
    func applyFieldsForm(_ ns: Namespace, query: Document, diff: Document, session: MongoSession?) throws {
        let truncations = (diff["truncatedArrays"]?.array ?? []).compactMap(\.document)
        if !truncations.isEmpty {
            let cursor = try client.find(ns.database, ns.collection, filter: query, opts: ["limit": .int32(1)])
            guard var current = try cursor.nextDocument() else { return }
            for t in truncations {
                guard let field = t["field"]?.string, let size = t["newSize"]?.int else { continue }
                current = FieldPath.truncate(current, path: field.split(separator: ".").map(String.init), to: Int(size))
            }
            try update(ns, query: query, update: .document(current), upsert: false, session: session)
        }
        var ops = Document()
        if let set = diff["updatedFields"]?.document, !set.isEmpty { ops["$set"] = .document(set) }
        let removed = (diff["removedFields"]?.array ?? []).compactMap(\.string)
        if !removed.isEmpty {
            var unset = Document()
            for f in removed { unset[f] = .string("") }
            ops["$unset"] = .document(unset)
        }
        if !ops.isEmpty { try update(ns, query: query, update: .document(ops), upsert: false, session: session) }
    }

    /// Error codes that mean "already as the entry leaves it": replays are idempotent.
    static let settled: Set<UInt32> = [26 /* NamespaceNotFound */, 27 /* IndexNotFound */, 48 /* NamespaceExists */,
                                       85 /* IndexOptionsConflict */, 86 /* IndexKeySpecsConflict */]

    func command(_ database: String, _ o: Document, entry: Document, session: MongoSession?) throws {
        guard let name = o.keys.first else { return }
        let db = map.map(database)
        func run(_ cmd: Document, on target: String? = nil) throws {
            do {
                try client.command(target ?? db, cmd, session: session)
            } catch let error as MongoError where OplogApplier.settled.contains(error.code) {
                // Replayed over a state that already has it (a dump taken after the entry).
            }
        }
        switch name {
        case "create":
            var cmd = o
            cmd["idIndex"] = nil
            if let pipeline = cmd["viewPipeline"] {
                cmd["viewPipeline"] = nil
                cmd["pipeline"] = pipeline
            }
            try run(cmd)
        case "drop", "collMod", "dropDatabase":
            try run(o)
        case "createIndexes", "commitIndexBuild":
            guard let coll = o[name]?.string else { return }
            var specs: [BSON]
            if let list = o["indexes"]?.array {
                specs = list
            } else {
                var spec = o
                spec[name] = nil
                specs = [.document(spec)]
            }
            specs = specs.map { s in
                guard var d = s.document else { return s }
                d["entryFormat"] = nil
                d["ns"] = nil
                return .document(d)
            }
            try run(["createIndexes": .string(coll), "indexes": .array(specs)])
        case "dropIndexes", "deleteIndexes":
            guard let coll = o[name]?.string, let index = o["index"] else { return }
            try run(["dropIndexes": .string(coll), "index": index])
        case "renameCollection":
            guard let from = o["renameCollection"]?.string.flatMap(Namespace.init(ns:)),
                  let to = o["to"]?.string.flatMap(Namespace.init(ns:)) else { return }
            var cmd: Document = ["renameCollection": .string(map.map(from).description), "to": .string(map.map(to).description)]
            cmd["dropTarget"] = o["dropTarget"].map { $0.bool == true ? BSON.bool(true) : .bool(false) }
            try run(cmd, on: "admin")
        case "applyOps":
            let ops = (o["applyOps"]?.array ?? []).compactMap(\.document)
            let key = OplogApplier.txnKey(entry)
            if o["partialTxn"]?.bool == true || o["prepare"]?.bool == true, let key {
                pending[key, default: []] += ops
                return
            }
            let all = (key.flatMap { pending.removeValue(forKey: $0) } ?? []) + ops
            try transaction(all)
        case "commitTransaction":
            if let key = OplogApplier.txnKey(entry), let ops = pending.removeValue(forKey: key) { try transaction(ops) }
        case "abortTransaction":
            if let key = OplogApplier.txnKey(entry) { pending[key] = nil }
        case "startIndexBuild", "abortIndexBuild":
            return // the index appears with commitIndexBuild
        default:
            throw MongoError("cannot replay the oplog command \(name) on \(database) (not supported)")
        }
    }
}

/// Dotted paths into documents (embedded documents only; arrays are not walked).
enum FieldPath {
    static func truncate(_ d: Document, path: [String], to size: Int) -> Document {
        guard let first = path.first, let value = d[first] else { return d }
        var out = d
        if path.count == 1 {
            if case .array(let a) = value { out[first] = .array(Array(a.prefix(size))) }
        } else if case .document(let sub) = value {
            out[first] = .document(truncate(sub, path: Array(path.dropFirst()), to: size))
        }
        return out
    }
}
