import Foundation

/// Agent → plugin: store the source's log as it is written, one log after another, each
/// committed before the next (engines whose log is pulled: binlog streaming, oplog tailing).
public struct CaptureRequest: Codable, Sendable, Equatable {
    public var type = "capture"
    public var source: String
    public var options: [String: String]
    /// true: run until stopped (the agent sends SIGTERM); false: store what the engine has
    /// now, then `capture.done`.
    public var follow: Bool
    /// The log of this source committed last (by its manifest's finish time), without
    /// artifacts; the plugin resumes right after it. Absent when the vault has none.
    public var last: BackupDescription?

    public init(source: String, options: [String: String] = [:], follow: Bool, last: BackupDescription? = nil) {
        self.source = source
        self.options = options
        self.follow = follow
        self.last = last
    }
}

/// Plugin → agent: the artifacts sent since the last `committed` are one log, named by
/// `positions.log`; the agent answers `committed` once it is durable.
public struct LogDone: Codable, Sendable, Equatable {
    public var type = "log.done"
    public var positions: [String: String]
    public var metadata: [String: String]

    public init(positions: [String: String], metadata: [String: String] = [:]) {
        self.positions = positions
        self.metadata = metadata
    }
}

/// Plugin → agent: a capture with `follow = false` stored all there was.
public struct CaptureDone: Codable, Sendable, Equatable {
    public var type = "capture.done"

    public init() {}
}

/// Plugin → agent, at any time: still working, though there is nothing to send (a quiet
/// server during a capture, a long recovery during a restore). It only resets the agent's
/// silence timeout, which is why the agent's reader drops it before anything else sees it.
public struct Alive: Codable, Sendable, Equatable {
    public var type = "alive"

    public init() {}
}
