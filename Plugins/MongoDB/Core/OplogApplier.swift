import Foundation

/// Replays oplog entries onto a server. In `.translate` mode (servers without `applyOps`:
/// SecantusDB, DocumentDB) as ordinary writes and commands: inserts become upserts of the
/// whole document, updates are applied as the entry says (mongod's `$v: 2` diff read,
/// applied and written back; SecantusDB's updatedFields/removedFields as $set/$unset; old
/// `$set`/`$unset` as they are; a whole document as a replacement), deletes by `_id`.
/// Every write is idempotent, so entries already reflected in a dump's documents replay
/// harmlessly. Transactions apply all or nothing in one server transaction.
///
/// In `.applyOps` mode (mongod) inserts, updates and deletes go to mongod's own applier in
/// applyOps batches (ApplyOpsBuilder), a transaction's operations in one applyOps of their
/// own; what applyOps cannot take as it is (commands, other diff forms) is translated, after
/// the batch before it has been sent, so order is kept.
public final class OplogApplier {
    let client: MongoClient
    let map: DatabaseMap
    public let mode: ReplayMode
    let builder: ApplyOpsBuilder
    /// Operations waiting to go to the target in one applyOps.
    private var batch: [Document] = []
    private var batchBytes = 0
    /// applyOps commands sent.
    public private(set) var applyOpsCommands = 0
    /// Entries of one transaction in SecantusDB's form (one entry per write, all with the
    /// same ts, lsid and txnNumber), gathered until an entry of another ts arrives.
    private var group: [OplogEntry] = []
    /// mongod's multi-entry transactions (applyOps with partialTxn, or prepared), by lsid+txnNumber.
    private var pending: [String: [Document]] = [:]
    public private(set) var applied = 0
    public private(set) var last: OplogEntry?

    /// About what one applyOps should carry (mongod takes commands up to 16 MiB + 16 KiB).
    static let batchLimit = (operations: 500, bytes: 8 << 20)

    public init(client: MongoClient, map: DatabaseMap, mode: ReplayMode = .translate) {
        self.client = client
        self.map = map
        self.mode = mode
        builder = ApplyOpsBuilder(map: map)
    }

    /// Applies one entry (or holds it back until its transaction is complete).
    public func apply(_ entry: OplogEntry) throws {
        if let first = group.first, first.ts != entry.ts || OplogApplier.txnKey(first.document) != OplogApplier.txnKey(entry.document) {
            try flushGroup()
        }
        if OplogApplier.txnKey(entry.document) != nil, ["i", "u", "d"].contains(entry.op) {
            group.append(entry)
        } else {
            try route(entry.document)
        }
        applied += 1
        last = entry
    }

    /// Applies what is held back that is complete (a trailing SecantusDB transaction group).
    /// mongod transactions with no commit entry yet stay unapplied: they had not committed.
    public func finish() throws {
        try flushGroup()
        try flushBatch()
    }

    private func flushGroup() throws {
        let entries = group
        group = []
        guard !entries.isEmpty else { return }
        if entries.count == 1 {
            try route(entries[0].document)
        } else {
            try applyTransaction(entries.map(\.document))
        }
    }

    /// One entry outside a transaction: into the applyOps batch, or translated.
    private func route(_ e: Document) throws {
        if mode == .applyOps {
            switch builder.shape(e) {
            case .skip: return
            case .op(let op):
                let size = op.bytes.count
                if !batch.isEmpty && (batch.count >= OplogApplier.batchLimit.operations || batchBytes + size > OplogApplier.batchLimit.bytes) {
                    try flushBatch()
                }
                batch.append(op)
                batchBytes += size
                return
            case .translate: break
            }
        }
        try flushBatch()
        try applyOne(e, session: nil)
    }

    private func flushBatch() throws {
        let ops = batch
        batch = []
        batchBytes = 0
        if !ops.isEmpty { try runApplyOps(ops, what: "\(ops.count) oplog entries") }
    }

    /// Sends one applyOps. mongod before 6.2 applies a command of only inserts, updates and
    /// deletes atomically; from 6.2 one operation after another, reporting any that failed
    /// (ok: 0, `results` false for them). Either way a failure fails the restore.
    private func runApplyOps(_ ops: [Document], what: String) throws {
        let reply: Document
        do {
            reply = try client.command("admin", builder.command(ops))
        } catch let error as MongoError {
            throw MongoError("applyOps of \(what) failed: \(error) (the target may hold part of them; restore again with --force, or with replay = translate)", code: error.code)
        }
        applyOpsCommands += 1
        if let results = reply["results"]?.array, let bad = results.firstIndex(where: { $0.bool == false }) {
            throw MongoError("applyOps of \(what) failed at operation \(bad): \(ops[bad]) (restore again with --force, or with replay = translate)")
        }
    }

    /// A whole transaction: one applyOps of its own when applyOps can take every operation,
    /// otherwise one server transaction of translated writes.
    private func applyTransaction(_ ops: [Document]) throws {
        try flushBatch()
        if mode == .applyOps, let shaped = builder.transaction(ops) {
            if !shaped.isEmpty { try runApplyOps(shaped, what: "a transaction of \(shaped.count) operations") }
            return
        }
        try transaction(ops)
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
            try applyTransaction(all)
        case "commitTransaction":
            if let key = OplogApplier.txnKey(entry), let ops = pending.removeValue(forKey: key) { try applyTransaction(ops) }
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
