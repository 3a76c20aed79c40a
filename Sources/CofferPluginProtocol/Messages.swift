import Foundation

/// Version 1 of the Coffer plugin protocol (docs/plugin-protocol.md).
public enum PluginProtocol {
    public static let version = 1
}

/// The `type` of every control message, for dispatch before decoding the rest.
public struct MessageHeader: Codable, Sendable {
    public var type: String
}

/// Both sides open with this: the agent first, the plugin in answer.
public struct Hello: Codable, Sendable, Equatable {
    public var type = "hello"
    public var `protocol`: Int
    /// "coffer 0.1.0" from the agent; the plugin's executable name from a plugin.
    public var software: String
    /// Plugins only: the engine they back up ("postgres") and what they can do
    /// ("backup.full", "backup.incremental", "backup.log", "restore").
    public var engine: String?
    public var capabilities: [String]?
    /// Agent only: the plugin's descriptors 3 and 4 hold shared memory of this many slots
    /// and its socket (`SharedSlots`). A plugin that maps it says "data.shared" among its
    /// capabilities, and from then on data may cross as `shared` frames both ways.
    public var sharedSlots: Int?

    public init(protocol: Int = PluginProtocol.version, software: String, engine: String? = nil, capabilities: [String]? = nil,
                sharedSlots: Int? = nil) {
        self.protocol = `protocol`
        self.software = software
        self.engine = engine
        self.capabilities = capabilities
        self.sharedSlots = sharedSlots
    }

    /// The capability a plugin announces once it has mapped the agent's shared memory.
    public static let sharedData = "data.shared"
}

/// Agent → plugin: take a backup of `source`.
public struct BackupRequest: Codable, Sendable, Equatable {
    public var type = "backup"
    public var source: String
    /// full, incremental or log.
    public var kind: String
    /// The source's settings from the config file, as strings.
    public var options: [String: String]
    /// The backup an incremental builds on: its id and recorded positions.
    public var parent: String?
    public var parentPositions: [String: String]?

    public init(source: String, kind: String, options: [String: String] = [:], parent: String? = nil,
                parentPositions: [String: String]? = nil) {
        self.source = source
        self.kind = kind
        self.options = options
        self.parent = parent
        self.parentPositions = parentPositions
    }
}

/// Either direction: the data frames that follow until `artifact.end` are this artifact.
public struct ArtifactBegin: Codable, Sendable, Equatable {
    public var type = "artifact.begin"
    public var name: String
    /// Plugin → agent only: cdc, fixed:SIZE or whole.
    public var chunker: String?
    /// Agent → plugin only: the size the plugin should expect.
    public var size: Int64?

    public init(name: String, chunker: String? = nil, size: Int64? = nil) {
        self.name = name
        self.chunker = chunker
        self.size = size
    }
}

public struct ArtifactEnd: Codable, Sendable, Equatable {
    public var type = "artifact.end"
    public var name: String
    /// Bytes sent; the receiver checks it against what it got.
    public var size: Int64

    public init(name: String, size: Int64) {
        self.name = name
        self.size = size
    }
}

/// Plugin → agent: the backup is complete and consistent at these positions.
public struct BackupDone: Codable, Sendable, Equatable {
    public var type = "done"
    public var positions: [String: String]
    public var metadata: [String: String]

    public init(positions: [String: String] = [:], metadata: [String: String] = [:]) {
        self.positions = positions
        self.metadata = metadata
    }
}

/// Agent → plugin: the backup is durable in the vault under this id. Only now may a plugin
/// tell its engine the data is safe (e.g. let an archive command exit 0).
public struct Committed: Codable, Sendable, Equatable {
    public var type = "committed"
    public var backup: String

    public init(backup: String) { self.backup = backup }
}

/// Agent → plugin: restore from these backups (base first, then logs), described by their
/// manifests so the plugin knows what to fetch.
public struct RestoreRequest: Codable, Sendable, Equatable {
    public var type = "restore"
    public var source: String
    public var backups: [BackupDescription]
    public var options: [String: String]
    /// Requests the agent answers beyond `fetch` and `fetch.log` (`fetch.many`); absent from
    /// agents that answer only those, so a plugin knows to fall back.
    public var capabilities: [String]?

    public init(source: String, backups: [BackupDescription], options: [String: String] = [:],
                capabilities: [String]? = nil) {
        self.source = source
        self.backups = backups
        self.options = options
        self.capabilities = capabilities
    }
}

/// What a plugin needs to know of one backup to restore it.
public struct BackupDescription: Codable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var positions: [String: String]
    public var metadata: [String: String]
    public var artifacts: [ArtifactDescription]

    public init(id: String, kind: String, positions: [String: String], metadata: [String: String],
                artifacts: [ArtifactDescription]) {
        self.id = id
        self.kind = kind
        self.positions = positions
        self.metadata = metadata
        self.artifacts = artifacts
    }
}

public struct ArtifactDescription: Codable, Sendable, Equatable {
    public var name: String
    public var size: Int64

    public init(name: String, size: Int64) {
        self.name = name
        self.size = size
    }
}

/// Plugin → agent during a restore: send this artifact of this backup.
public struct Fetch: Codable, Sendable, Equatable {
    public var type = "fetch"
    public var backup: String
    public var name: String

    public init(backup: String, name: String) {
        self.backup = backup
        self.name = name
    }
}

/// Plugin → agent during a restore: send these artifacts of this backup, in this order, each
/// as for `fetch` (artifact.begin, data, artifact.end). One request for many artifacts spares
/// a round trip per artifact and lets the agent decode the next ones while it sends one.
/// Only to agents that list `fetch.many` in `RestoreRequest.capabilities`.
public struct FetchMany: Codable, Sendable, Equatable {
    public var type = "fetch.many"
    public var backup: String
    public var names: [String]

    public init(backup: String, names: [String]) {
        self.backup = backup
        self.names = names
    }
}

/// Plugin → agent: the restore is finished.
public struct RestoreDone: Codable, Sendable, Equatable {
    public var type = "restored"
    public var positions: [String: String]

    public init(positions: [String: String] = [:]) { self.positions = positions }
}

/// Either direction: the job failed; the sender stops after this.
public struct ErrorMessage: Codable, Sendable, Equatable {
    public var type = "error"
    public var message: String

    public init(message: String) { self.message = message }
}

public enum Wire {
    public static func encode<M: Encodable>(_ message: M) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return Array(try e.encode(message))
    }

    /// The message's type, for dispatch.
    public static func type(of frame: Frame) throws -> String {
        guard frame.kind == .control else { throw ProtocolError.malformed("expected a control frame, got data") }
        do {
            return try JSONDecoder().decode(MessageHeader.self, from: Data(frame.payload)).type
        } catch {
            throw ProtocolError.malformed("control frame is not a JSON message with a type")
        }
    }

    /// The error a peer's `error` message stands for.
    public static func peerFailure(_ frame: Frame) -> ProtocolError {
        .peerFailed((try? decode(ErrorMessage.self, from: frame).message) ?? "unknown error")
    }

    public static func decode<M: Decodable>(_ type: M.Type, from frame: Frame) throws -> M {
        do {
            return try JSONDecoder().decode(M.self, from: Data(frame.payload))
        } catch {
            throw ProtocolError.malformed("bad \(M.self) message: \(error)")
        }
    }
}

/// Plugin → agent during a restore: send the log named `log` of the source (a WAL segment,
/// a binlog file), found by name rather than by backup id. The agent answers with the
/// artifact, or `log.missing` when the vault has no such log.
public struct FetchLog: Codable, Sendable, Equatable {
    public var type = "fetch.log"
    public var log: String

    public init(log: String) { self.log = log }
}

public struct LogMissing: Codable, Sendable, Equatable {
    public var type = "log.missing"
    public var log: String

    public init(log: String) { self.log = log }
}

/// Agent → plugin: reason about a source's chain from what the vault records of it (every
/// backup and log, without their artifacts). `verify` reports windows and problems; `plan`
/// also picks what a restore to `target` needs, or says why it cannot be done.
public struct ChainRequest: Codable, Sendable, Equatable {
    public var type = "chain"
    public var source: String
    public var action: String
    public var backups: [BackupDescription]
    /// For `plan`: the restore target in the engine's terms (time, lsn, xid, name,
    /// timeline; empty for the latest point).
    public var target: [String: String]
    public var options: [String: String]

    public init(source: String, action: String, backups: [BackupDescription], target: [String: String] = [:],
                options: [String: String] = [:]) {
        self.source = source
        self.action = action
        self.backups = backups
        self.target = target
        self.options = options
    }
}

/// Agent → plugin, before a `chain` request whose records would not fit one frame: more of
/// its `backups`, in order; the request itself carries the last of them.
public struct ChainRecords: Codable, Sendable, Equatable {
    public var type = "chain.records"
    public var backups: [BackupDescription]

    public init(backups: [BackupDescription]) { self.backups = backups }
}

/// Plugin → agent: the answer to a `chain` request.
public struct ChainReport: Codable, Sendable, Equatable {
    public var type = "chain.report"
    public var windows: [RestoreWindow]
    public var problems: [ChainProblem]
    /// For `plan`: the backups to restore, base first, and the target as the plugin will
    /// apply it; nil with `refusal` set when the target cannot be reached.
    public var plan: [String]?
    /// The target resolved to the engine's terms (e.g. the timeline "latest" stands for).
    public var target: [String: String]?
    public var refusal: String?

    public init(windows: [RestoreWindow], problems: [ChainProblem], plan: [String]? = nil,
                target: [String: String]? = nil, refusal: String? = nil) {
        self.windows = windows
        self.problems = problems
        self.plan = plan
        self.target = target
        self.refusal = refusal
    }
}

/// A stretch of one log stream (a PostgreSQL timeline, ...) to any point of which a
/// restore can go, from a base backup's consistent point to the end of the unbroken log.
public struct RestoreWindow: Codable, Sendable, Equatable {
    public var stream: String
    public var base: String
    public var fromPosition: String
    public var toPosition: String
    /// ISO 8601; nil where the log carries no times.
    public var fromTime: String?
    public var toTime: String?

    public init(stream: String, base: String, fromPosition: String, toPosition: String, fromTime: String?, toTime: String?) {
        self.stream = stream
        self.base = base
        self.fromPosition = fromPosition
        self.toPosition = toPosition
        self.fromTime = fromTime
        self.toTime = toTime
    }
}

/// Something wrong in a chain: a `missing`, `duplicate`, `corrupt` or `overlap` log, named.
public struct ChainProblem: Codable, Sendable, Equatable {
    public var kind: String
    public var log: String?
    public var detail: String

    public init(kind: String, log: String?, detail: String) {
        self.kind = kind
        self.log = log
        self.detail = detail
    }
}
