import CofferPluginProtocol
import CofferVault
import Foundation

extension PluginJob {
    /// One log a capture stored.
    public struct CapturedLog: Sendable {
        public let id: String
        public let manifest: Manifest
    }

    public enum CaptureEnd: Sendable, Equatable {
        /// `follow = false` and the plugin stored all there was.
        case finished
        /// Stopped on request (`stopRequested`); what was not yet committed is captured
        /// again by the next run, from the last log stored.
        case stopped
    }

    /// The log the source committed last, without artifacts: where a capture resumes.
    public static func lastLog(of source: String, in vault: Vault) throws -> BackupDescription? {
        let logs = try vault.backups(source: source).filter { $0.manifest.kind == "log" }
        guard let last = logs.max(by: { ($0.manifest.finished, $0.id) < ($1.manifest.finished, $1.id) }) else { return nil }
        return BackupDescription(id: last.id, kind: last.manifest.kind, positions: last.manifest.positions,
                                 metadata: last.manifest.metadata, artifacts: [])
    }

    /// Runs a capture: every log the plugin closes is committed exactly as a log backup
    /// (stored once under its name; same content again is the same backup, other content
    /// fails the job) before the plugin hears `committed` and `committed` here is called.
    /// To stop a following capture, make `stopRequested` true and `plugin.terminate()`.
    public func capture(_ request: CaptureRequest, software: String = "coffer",
                        stopRequested: @Sendable () -> Bool = { false },
                        committed: (CapturedLog) -> Void) throws -> CaptureEnd {
        try plugin.handshake(engine: engine, software: software)
        guard plugin.hello?.capabilities?.contains("capture") == true else {
            plugin.kill()
            plugin.waitForExit()
            throw VaultError.invalidArgument("the \(engine) plugin does not capture a log (it has no capability \"capture\")")
        }
        let logRequest = BackupRequest(source: request.source, kind: "log", options: request.options)
        do {
            return try plugin.guarded { () throws -> CaptureEnd in
                try plugin.writer.send(request)
                return try receiveLogs(logRequest, frames: FrameQueue(plugin.reader), committed: committed)
            }
        } catch {
            // The plugin ended because it was told to: whatever it had not closed is lost
            // here and taken again next time, which is what stopping means.
            if stopRequested() { return .stopped }
            throw error
        }
    }

    private func receiveLogs(_ request: BackupRequest, frames: FrameQueue, committed: (CapturedLog) -> Void) throws -> CaptureEnd {
        var session = try makeSession(for: request)
        var artifacts: [Artifact] = []
        var started = Date()
        while true {
            guard let frame = try frames.next() else { throw ProtocolError.closed }
            switch try Wire.type(of: frame) {
            case "artifact.begin":
                if artifacts.isEmpty { started = Date() }
                artifacts.append(try receiveArtifact(frame, session: session, frames: frames, progress: nil).finish())
            case "log.done":
                let done = try Wire.decode(LogDone.self, from: frame)
                let manifest = Manifest(source: request.source, engine: engine, kind: "log", parent: nil,
                                        started: started, finished: Date(), positions: done.positions,
                                        artifacts: artifacts, metadata: done.metadata)
                let id = try commitLog(manifest, session: session)
                committed(CapturedLog(id: id, manifest: manifest))
                try plugin.writer.send(Committed(backup: id))
                session = try makeSession(for: request)
                artifacts = []
            case "capture.done":
                guard artifacts.isEmpty else {
                    throw ProtocolError.malformed("capture.done with \(artifacts.count) artifacts not closed by log.done")
                }
                plugin.waitForExit()
                return .finished
            case "error":
                throw Wire.peerFailure(frame)
            case let other:
                throw ProtocolError.malformed("unexpected \(other) message during a capture")
            }
        }
    }
}
