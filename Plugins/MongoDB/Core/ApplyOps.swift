import Foundation

/// How a restore writes oplog entries to the target (option `replay`: auto, applyops,
/// translate; decision 014).
public enum ReplayMode: String, Sendable {
    /// mongod's own applier, through the applyOps command.
    case applyOps = "applyops"
    /// Ordinary writes and commands (OplogApplier's translation).
    case translate

    /// The mode for the `replay` option (nil: auto). Auto and applyops ask the target first:
    /// an empty applyOps is a no-op on mongod and CommandNotFound (59) where the command does
    /// not exist (SecantusDB, DocumentDB). Nothing is written by the question, so a forced
    /// applyops fails here, before the restore has touched the target.
    public static func choose(option: String?, target: MongoClient) throws -> (mode: ReplayMode, reason: String) {
        let wanted = (option ?? "auto").lowercased()
        guard ["auto", "applyops", "translate"].contains(wanted) else {
            throw MongoError("replay must be auto, applyops or translate, not '\(option ?? "")'")
        }
        if wanted == "translate" { return (.translate, "replay = translate") }
        let missing: String
        do {
            try target.command("admin", ["applyOps": .array([])])
            return (.applyOps, wanted == "auto" ? "the target runs applyOps" : "replay = applyops; the target runs applyOps")
        } catch let error as MongoError where error.code == 59 {
            missing = "CommandNotFound: the server has no applyOps command"
        } catch let error as MongoError {
            // Unauthorized (13) and the like: applyOps exists but this user may not run it.
            missing = "an empty applyOps was refused: \(error)"
        }
        if wanted == "auto" { return (.translate, "the target has no usable applyOps (\(missing))") }
        throw MongoError("replay = applyops, but the target cannot run applyOps (\(missing)); nothing was restored. Use replay = auto or translate")
    }
}

/// Builds applyOps commands from oplog entries, each operation in the shape mongod's applier
/// takes (`{op, ns, o, o2}`, as MongoDB's applyOps reference and its apply_ops tests write
/// them): the namespace renamed for `database.OLD=NEW`, and without `ui` (a restore creates
/// its collections anew, so their UUIDs never match the source's: with `ui` mongod would look
/// up the source's collection, fail with "point to different collections", and need the
/// useUUID/forceUUID privileges), nor the entry's own ts/t/wall/lsid/txnNumber/stmtId, which
/// the target assigns itself. Pure: no server is asked.
public struct ApplyOpsBuilder: Sendable {
    public let map: DatabaseMap

    public init(map: DatabaseMap) { self.map = map }

    /// What applyOps makes of one entry.
    public enum Shape: Equatable, Sendable {
        /// The operation to send.
        case op(Document)
        /// Nothing to apply (a no-op, or a namespace a restore leaves out).
        case skip
        /// applyOps cannot take it as it is: replay it by translation. Commands (whose
        /// "already exists"/"not found" answers must count as done when the dump already holds
        /// their effect, and whose index builds mongod no longer accepts through applyOps),
        /// SecantusDB's updatedFields diff (mongod's applier knows only its own diff), and
        /// old `$set`/`$unset` updates without `$v: 2` (refused by applyOps since 6.1).
        case translate
    }

    public func shape(_ e: Document) -> Shape {
        let op = e["op"]?.string ?? ""
        if op == "n" { return .skip }
        guard ["i", "u", "d"].contains(op), let source = (e["ns"]?.string).flatMap(Namespace.init(ns:)),
              let o = e["o"]?.document else { return .translate }
        if source.excluded { return .skip }
        if op == "u" {
            let diff = o["diff"]?.document
            let changeStreamForm = diff.map { $0["updatedFields"] != nil || $0["removedFields"] != nil || $0["truncatedArrays"] != nil } ?? false
            let operators = o.keys.contains { $0.hasPrefix("$") }
            if changeStreamForm || (operators && !(o["$v"]?.int == 2 && diff != nil)) { return .translate }
        }
        var out: Document = ["op": .string(op), "ns": .string(map.map(source).description), "o": .document(o)]
        if let o2 = e["o2"] { out["o2"] = o2 }
        if let upsert = e["b"] { out["b"] = upsert }
        return .op(out)
    }

    /// The operations of a whole transaction, or nil when any of them must be translated
    /// (then the transaction is replayed by translation, in one server transaction).
    public func transaction(_ ops: [Document]) -> [Document]? {
        var out: [Document] = []
        for op in ops {
            switch shape(op) {
            case .op(let d): out.append(d)
            case .skip: continue
            case .translate: return nil
            }
        }
        return out
    }

    /// The applyOps command for operations built by `shape`, run on admin. Documents bypass
    /// validation as the dump's inserts do: they were valid when written.
    public func command(_ ops: [Document]) -> Document {
        ["applyOps": .array(ops.map { .document($0) }), "bypassDocumentValidation": .bool(true)]
    }
}
