import Foundation

/// One job's state: what `coffer status`, GET /status and the metrics show, and what the
/// agent persists so a restart knows the last successes.
public struct JobStatus: Codable, Sendable, Equatable {
    public var source: String
    public var kind: String
    /// "EXPR (Zone)"; nil for capture, which always runs.
    public var schedule: String?
    public var nextRun: Date?
    public var running = false
    public var pid: Int32?
    public var startedAt: Date?
    /// When the last attempt ended, and how: ok, failed, gap (verify found one), stopped (agent shutdown).
    public var lastRun: Date?
    public var lastResult: String?
    public var lastSuccess: Date?
    public var lastDuration: Double?
    public var lastExitCode: Int32?
    public var lastError: String?
    /// The backup id of the last successful backup job.
    public var lastBackup: String?
    /// Bytes the last successful backup read from the source (its logical size).
    public var bytesRead: Int64?
    /// How much the vault grew during the last successful backup.
    public var bytesStored: Int64?
    /// bytesRead / bytesStored: what dedupe and compression saved.
    public var reductionRatio: Double?
    /// Failed attempts in a row for the current run; the next retry when one is pending.
    public var failedAttempts = 0
    public var retryAt: Date?
    public var runs = 0
    public var failures = 0
    /// Due runs skipped because the previous one was still running.
    public var skipped = 0
    /// Whether the last good run is older than the schedule allows (stale_grace past due).
    public var stale = false
    // Capture only.
    public var logsCommitted: Int?
    public var lastLog: String?
    public var lastCommitAt: Date?
    /// Seconds since the last committed log (or since capture started, before the first).
    public var captureLag: Double?

    public init(source: String, kind: String) {
        self.source = source
        self.kind = kind
    }

    public var id: String { "\(source)/\(kind)" }

    enum CodingKeys: String, CodingKey {
        case source, kind, schedule, nextRun, running, pid, startedAt, lastRun, lastResult, lastSuccess, lastDuration
        case lastExitCode, lastError, lastBackup, bytesRead, bytesStored, reductionRatio, failedAttempts, retryAt
        case runs, failures, skipped, stale, logsCommitted, lastLog, lastCommitAt, captureLag
    }

    /// Keys missing from an older state file take their defaults: an upgrade keeps the history.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        source = try c.decode(String.self, forKey: .source)
        kind = try c.decode(String.self, forKey: .kind)
        schedule = try c.decodeIfPresent(String.self, forKey: .schedule)
        nextRun = try c.decodeIfPresent(Date.self, forKey: .nextRun)
        running = try c.decodeIfPresent(Bool.self, forKey: .running) ?? false
        pid = try c.decodeIfPresent(Int32.self, forKey: .pid)
        startedAt = try c.decodeIfPresent(Date.self, forKey: .startedAt)
        lastRun = try c.decodeIfPresent(Date.self, forKey: .lastRun)
        lastResult = try c.decodeIfPresent(String.self, forKey: .lastResult)
        lastSuccess = try c.decodeIfPresent(Date.self, forKey: .lastSuccess)
        lastDuration = try c.decodeIfPresent(Double.self, forKey: .lastDuration)
        lastExitCode = try c.decodeIfPresent(Int32.self, forKey: .lastExitCode)
        lastError = try c.decodeIfPresent(String.self, forKey: .lastError)
        lastBackup = try c.decodeIfPresent(String.self, forKey: .lastBackup)
        bytesRead = try c.decodeIfPresent(Int64.self, forKey: .bytesRead)
        bytesStored = try c.decodeIfPresent(Int64.self, forKey: .bytesStored)
        reductionRatio = try c.decodeIfPresent(Double.self, forKey: .reductionRatio)
        failedAttempts = try c.decodeIfPresent(Int.self, forKey: .failedAttempts) ?? 0
        retryAt = try c.decodeIfPresent(Date.self, forKey: .retryAt)
        runs = try c.decodeIfPresent(Int.self, forKey: .runs) ?? 0
        failures = try c.decodeIfPresent(Int.self, forKey: .failures) ?? 0
        skipped = try c.decodeIfPresent(Int.self, forKey: .skipped) ?? 0
        stale = try c.decodeIfPresent(Bool.self, forKey: .stale) ?? false
        logsCommitted = try c.decodeIfPresent(Int.self, forKey: .logsCommitted)
        lastLog = try c.decodeIfPresent(String.self, forKey: .lastLog)
        lastCommitAt = try c.decodeIfPresent(Date.self, forKey: .lastCommitAt)
        captureLag = try c.decodeIfPresent(Double.self, forKey: .captureLag)
    }
}

/// A delivered (or attempted) alert, as kept in the status.
public struct AlertRecord: Codable, Sendable, Equatable {
    public var type: String
    public var source: String
    public var kind: String?
    public var time: Date
    public var message: String
    public var delivered: Bool?
}

/// The whole agent's state: the status endpoint's body and the state file.
public struct AgentStatus: Codable, Sendable, Equatable {
    public var version = 1
    public var pid: Int32
    public var host: String
    public var config: String
    public var vault: String?
    /// host:port the HTTP server listens on (the real port when configured as 0).
    public var listen: String?
    public var started: Date
    /// First start of an agent with this state directory: the baseline for staleness
    /// of jobs that never succeeded.
    public var since: Date
    public var updated: Date
    /// Set by readers of the state file: whether an agent holds the lock now.
    public var running: Bool?
    public var vaultSize: Int64?
    public var jobs: [JobStatus]
    public var alerts: [AlertRecord]

    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(Self.timestamp(date))
        }
        return e
    }

    /// ISO 8601 in UTC, with milliseconds when the time has them (the metrics carry them too).
    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        if date.timeIntervalSince1970.rounded(.down) != date.timeIntervalSince1970 {
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        }
        return f.string(from: date)
    }

    public static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            let f = ISO8601DateFormatter()
            if let date = f.date(from: text) { return date }
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let date = f.date(from: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an ISO 8601 time: \(text)"))
            }
            return date
        }
        return d
    }
}

/// The state file: written whole to a temporary name and renamed, so a reader (or the
/// next agent) never sees half of it.
public struct StateStore: Sendable {
    public let directory: String
    public var path: String { directory + "/state.json" }
    public var lockPath: String { directory + "/agent.lock" }

    public init(directory: String) { self.directory = directory }

    /// The state directory: [agent] state_dir, else $STATE_DIRECTORY (systemd's
    /// StateDirectory=), else /var/lib/coffer for root, else $XDG_STATE_HOME/coffer or
    /// ~/.local/state/coffer.
    public static func directory(configured: String?) -> String {
        if let configured { return configured }
        let env = ProcessInfo.processInfo.environment
        if let systemd = env["STATE_DIRECTORY"], !systemd.isEmpty {
            return String(systemd.split(separator: ":").first ?? Substring(systemd))
        }
        if getuid() == 0 { return "/var/lib/coffer" }
        if let xdg = env["XDG_STATE_HOME"], !xdg.isEmpty { return xdg + "/coffer" }
        return (env["HOME"] ?? NSHomeDirectory()) + "/.local/state/coffer"
    }

    public func load() throws -> AgentStatus? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try AgentStatus.decoder.decode(AgentStatus.self, from: data)
        } catch {
            throw DaemonError("state file \(path) is unreadable (\(error)); move it away to start afresh")
        }
    }

    public func save(_ status: AgentStatus) throws {
        let data = try AgentStatus.encoder.encode(status)
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw DaemonError("cannot write \(tmp): \(String(cString: strerror(errno)))")
        }
        guard rename(tmp, path) == 0 else { throw DaemonError("cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))") }
    }
}

public struct DaemonError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
