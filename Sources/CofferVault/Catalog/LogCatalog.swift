/// Log segments (WAL segments, binlog files, oplog slices) are found by name: each log
/// manifest gets a reference object, named by a keyed hash of its source and log name (so
/// names leak nothing), that holds the manifest id. The manifest stays the truth: a
/// reference is only trusted once the manifest it names says it is that log.
extension Vault {
    func logReferenceName(source: String, log: String) -> String {
        Hex.encode(idHasher.mac(prefix: Array("log\0".utf8), Array((source + "\0" + log).utf8)))
    }

    /// The manifest holding log `log` of `source`, or nil when none is recorded.
    public func logManifest(source: String, log: String) throws -> BackupRecord? {
        let name = logReferenceName(source: source, log: log)
        let bytes: [UInt8]
        do {
            bytes = try backend.read(.logs, name)
        } catch VaultError.missingObject {
            return nil
        }
        let id = String(decoding: bytes, as: UTF8.self)
        let manifest: Manifest
        do {
            manifest = try readManifest(id: id)
        } catch VaultError.missingObject {
            return nil // the manifest was lost or removed: the log is not in the vault
        }
        guard manifest.source == source, manifest.positions["log"] == log else {
            throw VaultError.corruptObject(kind: .logs, name: name, reason: "names manifest \(id), which is not log \(log) of \(source)")
        }
        return BackupRecord(id: id, manifest: manifest)
    }

    /// Records that manifest `id` (already durable) holds log `log` of `source`.
    public func recordLog(source: String, log: String, manifest id: String) throws {
        try backend.write(.logs, logReferenceName(source: source, log: log), Array(id.utf8))
    }
}

extension Vault {
    /// How many of the manifest's blobs (content ids inline, list blobs otherwise) the
    /// loaded index does not know; nil when all are there. A cheap completeness check:
    /// `vault check --read-data` is the one that reads them.
    public func missingBlobs(_ manifest: Manifest) -> Int? {
        var missing = 0
        for artifact in manifest.artifacts {
            for id in (artifact.blobs ?? artifact.lists)?.ids ?? [] where !index.contains(id) { missing += 1 }
        }
        return missing == 0 ? nil : missing
    }
}
