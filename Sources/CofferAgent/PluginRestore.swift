import CofferPluginProtocol
import CofferVault
import Foundation

extension PluginJob {
    /// A restore done by the plugin of `backups` (ids, base first) of `source`: the agent
    /// answers its `fetch` requests from the vault (only for those backups) until the plugin
    /// says `restored`. `options` go to the plugin.
    public func restore(source: String, backups: [String], options: [String: String],
                    software: String = "coffer") throws -> RestoreDone {
        let descriptions = try backups.map { id in
            let m = try vault.readManifest(id: id)
            return BackupDescription(id: id, kind: m.kind, positions: m.positions, metadata: m.metadata,
                                     artifacts: m.artifacts.map { ArtifactDescription(name: $0.name, size: $0.size) })
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
                    let manifest = try vault.readManifest(id: fetch.backup)
                    guard let artifact = manifest.artifacts.first(where: { $0.name == fetch.name }) else {
                        throw ProtocolError.malformed("backup \(fetch.backup) has no artifact \(fetch.name)")
                    }
                    try plugin.writer.send(ArtifactBegin(name: artifact.name, size: artifact.size))
                    try reader.read(artifact) { try plugin.writer.sendData($0) }
                    try plugin.writer.send(ArtifactEnd(name: artifact.name, size: artifact.size))
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
