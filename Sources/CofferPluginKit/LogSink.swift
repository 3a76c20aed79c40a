import CofferPluginProtocol
import Foundation

/// Streams logs to the agent during a capture: each log's artifacts, then `commit`, which
/// returns only once the agent has made the log durable.
public final class LogSink: @unchecked Sendable {
    private let writer: FrameWriter
    private let reader: FrameReader
    private let artifacts: ArtifactSink
    private var lastSent = Date()

    init(writer: FrameWriter, reader: FrameReader) {
        self.writer = writer
        self.reader = reader
        artifacts = ArtifactSink(writer: writer)
    }

    /// Sends one artifact of the current log (as `ArtifactSink.artifact`).
    public func artifact(name: String, chunker: String = "whole", body: (ArtifactWriter) throws -> Void) throws {
        try artifacts.artifact(name: name, chunker: chunker, body: body)
        lastSent = Date()
    }

    /// Closes the current log: `positions.log` names it (unique within the source), the rest
    /// says where it starts and ends so that the next capture can resume right after it.
    /// Returns the id the agent stored it under.
    @discardableResult
    public func commit(positions: [String: String], metadata: [String: String] = [:]) throws -> String {
        guard let log = positions["log"], !log.isEmpty else {
            throw ProtocolError.malformed("a captured log must name itself in positions.log")
        }
        try writer.send(LogDone(positions: positions, metadata: metadata))
        let committed = try PluginRunner.expect(Committed.self, "committed", from: reader)
        lastSent = Date()
        return committed.backup
    }

    /// Tells the agent the plugin is still at work (waiting on a quiet server), so that its
    /// silence timeout does not fire. Cheap: sends at most one message a second, so call
    /// it as often as is convenient.
    public func alive() throws {
        guard Date().timeIntervalSince(lastSent) >= 1 else { return }
        try writer.send(Alive())
        lastSent = Date()
    }
}
