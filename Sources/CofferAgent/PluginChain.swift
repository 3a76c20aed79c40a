import CofferPluginProtocol
import CofferVault
import Foundation

extension PluginJob {
    /// Asks the plugin about the chain of `source` as the vault records it: every backup
    /// and log of the source, described without artifacts (the plugin reasons on positions
    /// and metadata only).
    /// A source with years of WAL has more records than one 16 MiB frame holds: they go in
    /// `chain.records` frames of at most `frameBudget` bytes of JSON, the last with the request.
    public func chain(source: String, records: [BackupRecord], action: String, target: [String: String] = [:],
                      options: [String: String], software: String = "coffer", frameBudget: Int = 8 << 20) throws -> ChainReport {
        let descriptions = records.map {
            BackupDescription(id: $0.id, kind: $0.manifest.kind, positions: $0.manifest.positions,
                              metadata: $0.manifest.metadata, artifacts: [])
        }
        var batches = try Self.batches(descriptions, budget: frameBudget)
        let request = ChainRequest(source: source, action: action, backups: batches.removeLast(), target: target, options: options)
        try plugin.handshake(engine: engine, software: software)
        return try plugin.guarded { () throws -> ChainReport in
            for batch in batches { try plugin.writer.send(ChainRecords(backups: batch)) }
            try plugin.writer.send(request)
            guard let frame = try plugin.reader.next() else { throw ProtocolError.closed }
            switch try Wire.type(of: frame) {
            case "chain.report":
                let report = try Wire.decode(ChainReport.self, from: frame)
                plugin.waitForExit()
                return report
            case "error":
                throw Wire.peerFailure(frame)
            case let other:
                throw ProtocolError.malformed("unexpected \(other) message in answer to a chain request")
            }
        }
    }
}

extension PluginJob {
    /// Consecutive runs of `descriptions` whose JSON stays under `budget` bytes each (one
    /// record larger than that goes alone); never empty, so the request always has a last one.
    public static func batches(_ descriptions: [BackupDescription], budget: Int) throws -> [[BackupDescription]] {
        let encoder = JSONEncoder()
        var out: [[BackupDescription]] = [[]]
        var bytes = 0
        for d in descriptions {
            let size = try encoder.encode(d).count + 1
            if bytes + size > budget, !out[out.count - 1].isEmpty {
                out.append([])
                bytes = 0
            }
            out[out.count - 1].append(d)
            bytes += size
        }
        return out
    }
}

/// What the vault says of one source's records, read tolerantly: a manifest that cannot be
/// read is reported, not fatal, so verification names every bad one.
public struct SourceRecords {
    public var records: [BackupRecord] = []
    /// Manifests that failed to read (they may belong to any source), and logs whose blobs
    /// are not in the index.
    public var problems: [ChainProblem] = []

    public init(vault: Vault, source: String, checkBlobs: Bool) throws {
        if checkBlobs { try vault.loadIndex() }
        for id in try vault.backend.list(.manifests) {
            let manifest: Manifest
            do {
                manifest = try vault.readManifest(id: id)
            } catch let error as VaultError {
                problems.append(ChainProblem(kind: "corrupt", log: nil, detail: "manifest \(id.prefix(12)): \(error)"))
                continue
            }
            guard manifest.source == source else { continue }
            if checkBlobs, let missing = vault.missingBlobs(manifest) {
                let what = manifest.positions["log"].map { "log \($0)" } ?? "\(manifest.kind) backup \(id.prefix(12))"
                problems.append(ChainProblem(kind: "corrupt", log: manifest.positions["log"],
                                             detail: "\(what): \(missing) of its blobs are not in the vault's index"))
                continue
            }
            records.append(BackupRecord(id: id, manifest: manifest))
        }
        records.sort { ($0.manifest.started, $0.id) < ($1.manifest.started, $1.id) }
    }
}
