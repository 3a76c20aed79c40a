import CofferPluginProtocol
import CofferVault
import Foundation

extension PluginJob {
    /// A restore done by the plugin of `backups` (ids, base first) of `source`: the agent
    /// answers its `fetch` requests from the vault (only for those backups) until the plugin
    /// says `restored`. `options` go to the plugin.
    public func restore(source: String, backups: [String], options: [String: String],
                    software: String = "coffer") throws -> RestoreDone {
        let manifests = try backups.map { try vault.readManifest(id: $0) }
        let descriptions = zip(backups, manifests).map { id, m in
            BackupDescription(id: id, kind: m.kind, positions: m.positions, metadata: m.metadata,
                              artifacts: m.artifacts.map { ArtifactDescription(name: $0.name, size: $0.size) })
        }
        // Looked up once: a base backup has thousands of artifacts, fetched one by one.
        var artifacts: [String: [String: Artifact]] = [:]
        for (id, m) in zip(backups, manifests) {
            artifacts[id] = Dictionary(m.artifacts.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        }
        let request = RestoreRequest(source: source, backups: descriptions, options: options)
        try plugin.handshake(engine: engine, software: software)
        let reader = try ArtifactReader(vault: vault)
        return try plugin.guarded { () throws -> RestoreDone in
            try plugin.writer.send(request)
            while true {
                guard let frame = try plugin.reader.next() else { throw ProtocolError.closed }
                switch try Wire.type(of: frame) {
                case "fetch":
                    let fetch = try Wire.decode(Fetch.self, from: frame)
                    guard backups.contains(fetch.backup) else {
                        throw ProtocolError.malformed("fetch of backup \(fetch.backup), which is not part of this restore")
                    }
                    guard let artifact = artifacts[fetch.backup]?[fetch.name] else {
                        throw ProtocolError.malformed("backup \(fetch.backup) has no artifact \(fetch.name)")
                    }
                    try plugin.writer.send(ArtifactBegin(name: artifact.name, size: artifact.size))
                    try reader.read(artifact) { try plugin.writer.sendData($0) }
                    try plugin.writer.send(ArtifactEnd(name: artifact.name, size: artifact.size))
                case "fetch.log":
                    let fetch = try Wire.decode(FetchLog.self, from: frame)
                    guard let record = try vault.logManifest(source: source, log: fetch.log) else {
                        try plugin.writer.send(LogMissing(log: fetch.log))
                        continue
                    }
                    guard record.manifest.artifacts.count == 1, let artifact = record.manifest.artifacts.first else {
                        throw VaultError.corruptObject(kind: .manifests, name: record.id,
                                                       reason: "log \(fetch.log) has \(record.manifest.artifacts.count) artifacts, not one")
                    }
                    try plugin.writer.send(ArtifactBegin(name: fetch.log, size: artifact.size))
                    try reader.read(artifact) { try plugin.writer.sendData($0) }
                    try plugin.writer.send(ArtifactEnd(name: fetch.log, size: artifact.size))
                case "restored":
                    let done = try Wire.decode(RestoreDone.self, from: frame)
                    plugin.waitForExit()
                    return done
                case "error":
                    throw Wire.peerFailure(frame)
                case let other:
                    throw ProtocolError.malformed("unexpected \(other) message during a restore")
                }
            }
        }
    }
}
