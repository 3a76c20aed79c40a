import CofferVault
import Foundation
import TOMLKit

/// The config file (TOML): the vault and the sources. Environment variables override it
/// (docs/config.md lists every key).
public struct CofferConfig: Sendable, Equatable {
    public struct VaultSettings: Sendable, Equatable {
        public var path: String?
        public var passphraseFile: String?
        public var keyFile: String?
    }

    public struct Source: Sendable, Equatable {
        public var name: String
        public var engine: String
        /// Seconds a plugin may stay silent before its job fails.
        public var pluginTimeout: Double
        /// Every other key, as a string, for the plugin.
        public var options: [String: String]
        /// When `coffer agent` runs this source's jobs ([source.NAME.schedule]).
        public var schedule = Schedule()
        /// Whether `coffer agent` keeps `coffer capture` running for this source.
        public var capture = false
        /// `[source.NAME.retention]`: what `coffer prune` keeps; nil leaves the source alone.
        public var retention: RetentionPolicy? = nil

        public init(name: String, engine: String, pluginTimeout: Double, options: [String: String],
                    schedule: Schedule = Schedule(), capture: Bool = false, retention: RetentionPolicy? = nil) {
            self.name = name
            self.engine = engine
            self.pluginTimeout = pluginTimeout
            self.options = options
            self.schedule = schedule
            self.capture = capture
            self.retention = retention
        }
    }

    /// Cron expressions (5 fields) for the agent's jobs of one source; nil = never.
    public struct Schedule: Sendable, Equatable {
        public var full: String?
        public var incremental: String?
        public var log: String?
        public var verify: String?
        public var prune: String?
        /// IANA zone the expressions are read in; nil = [agent] time_zone.
        public var timeZone: String?
        public init() {}
        static let keys = ["full", "incremental", "log", "verify", "prune", "time_zone"]
    }

    /// The [agent] section: how `coffer agent` runs (docs/config.md, docs/agent.md).
    public struct AgentSettings: Sendable, Equatable {
        /// host:port for the HTTP status and metrics endpoints; "" = no HTTP server.
        public var listen = "127.0.0.1:9466"
        /// Lock file and persisted state; nil = /var/lib/coffer (root) or ~/.local/state/coffer.
        public var stateDir: String?
        /// IANA zone for schedules without their own; nil = the system's zone.
        public var timeZone: String?
        public var maxConcurrentJobs = 2
        /// Seconds between SIGTERM to running jobs and SIGKILL, at shutdown.
        public var shutdownGrace: Double = 60
        public var webhooks: [String] = []
        /// Attempts per alert delivery (first try included).
        public var webhookAttempts = 5
        /// Seconds past a scheduled run before a source without a good backup since is stale.
        public var staleGrace: Double = 3600
        /// Seconds without a committed log before a running capture is behind.
        public var captureLag: Double = 300
        /// Retries after a failed job (0 = none), with exponential backoff.
        public var retryAttempts = 3
        public var retryDelay: Double = 30
        public var retryMaxDelay: Double = 900
        /// On start, run at once each job whose last scheduled time passed without a success.
        public var catchUp = true
        /// The coffer executable jobs run; nil = the one running the agent.
        public var coffer: String?
        public init() {}
        static let keys = ["listen", "state_dir", "time_zone", "max_concurrent_jobs", "shutdown_grace", "webhooks",
                           "webhook_attempts", "stale_grace", "capture_lag", "retry_attempts", "retry_delay",
                           "retry_max_delay", "catch_up", "coffer"]
    }

    /// `[prune]`: how garbage collection goes (docs/config.md).
    public struct PruneSettings: Sendable, Equatable {
        public var repackThreshold: Double?
        public var grace: TimeInterval?
        public var clockSkew: TimeInterval?
    }

    public var vault = VaultSettings()
    public var sources: [String: Source] = [:]
    public var agent = AgentSettings()
    public var prune = PruneSettings()

    public init() {}

    public static func load(path: String) throws -> CofferConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw VaultError.invalidArgument("cannot read config file \(path)")
        }
        return try parse(text, origin: path)
    }

    public static func parse(_ text: String, origin: String = "config") throws -> CofferConfig {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw VaultError.invalidArgument("\(origin):\(error.source.begin.line): \(error.description)")
        } catch {
            throw VaultError.invalidArgument("\(origin): \(error)")
        }
        var config = CofferConfig()
        for key in table.keys where !["vault", "source", "agent", "prune"].contains(key) {
            throw VaultError.invalidArgument("\(origin): unknown section or key '\(key)' (expected [vault], [source.NAME], [agent] and [prune])")
        }
        if let agent = table["agent"] {
            guard let a = agent.table else { throw VaultError.invalidArgument("\(origin): 'agent' must be a table") }
            config.agent = try parseAgent(a, origin)
        }
        if let prune = table["prune"] {
            guard let p = prune.table else { throw VaultError.invalidArgument("\(origin): 'prune' must be a table") }
            config.prune = try pruneSettings(p, origin)
        }
        if let vault = table["vault"] {
            guard let v = vault.table else { throw VaultError.invalidArgument("\(origin): 'vault' must be a table") }
            for key in v.keys where !["path", "passphrase_file", "key_file"].contains(key) {
                throw VaultError.invalidArgument("\(origin): unknown key vault.\(key) (expected path, passphrase_file, key_file)")
            }
            config.vault.path = try string(v, "path", in: "vault", origin)
            config.vault.passphraseFile = try string(v, "passphrase_file", in: "vault", origin)
            config.vault.keyFile = try string(v, "key_file", in: "vault", origin)
        }
        if let sources = table["source"] {
            guard let s = sources.table else { throw VaultError.invalidArgument("\(origin): 'source' must hold [source.NAME] tables") }
            for name in s.keys {
                guard let t = s[name]?.table else {
                    throw VaultError.invalidArgument("\(origin): source.\(name) must be a table")
                }
                guard let engine = try string(t, "engine", in: "source.\(name)", origin) else {
                    throw VaultError.invalidArgument("\(origin): source.\(name) has no engine (postgres, mysql, mongodb, ...)")
                }
                var timeout = 300.0
                var options: [String: String] = [:]
                var schedule = Schedule()
                var capture = false
                var retention: RetentionPolicy?
                for key in t.keys where key != "engine" {
                    let value = t[key]!
                    if key == "schedule" {
                        schedule = try parseSchedule(value, in: "source.\(name).schedule", origin)
                        continue
                    }
                    if key == "retention" {
                        guard let r = value.table else {
                            throw VaultError.invalidArgument("\(origin): source.\(name).retention must be a table ([source.\(name).retention])")
                        }
                        retention = try retentionPolicy(r, in: "source.\(name).retention", origin)
                        continue
                    }
                    if key == "capture" {
                        guard let b = value.bool else { throw VaultError.invalidArgument("\(origin): source.\(name).capture must be true or false") }
                        capture = b
                        continue
                    }
                    if key == "plugin_timeout" {
                        guard let seconds = value.double ?? value.int.map(Double.init), seconds > 0 else {
                            throw VaultError.invalidArgument("\(origin): source.\(name).plugin_timeout must be a positive number of seconds")
                        }
                        timeout = seconds
                        continue
                    }
                    if let str = value.string {
                        options[key] = str
                    } else if let int = value.int {
                        options[key] = String(int)
                    } else if let double = value.double {
                        options[key] = String(double)
                    } else if let bool = value.bool {
                        options[key] = String(bool)
                    } else {
                        throw VaultError.invalidArgument("\(origin): source.\(name).\(key) must be a string, number or boolean")
                    }
                }
                config.sources[name] = Source(name: name, engine: engine, pluginTimeout: timeout, options: options,
                                              schedule: schedule, capture: capture, retention: retention)
            }
        }
        return config
    }

    public func source(_ name: String) throws -> Source {
        guard let source = sources[name] else {
            let known = sources.keys.sorted().joined(separator: ", ")
            throw VaultError.invalidArgument("no source '\(name)' in the config file\(known.isEmpty ? "" : " (it has: \(known))")")
        }
        return source
    }

    private static func parseSchedule(_ value: TOMLValueConvertible, in section: String, _ origin: String) throws -> Schedule {
        guard let t = value.table else { throw VaultError.invalidArgument("\(origin): \(section) must be a table") }
        for key in t.keys where !Schedule.keys.contains(key) {
            throw VaultError.invalidArgument("\(origin): unknown key \(section).\(key) (expected \(Schedule.keys.joined(separator: ", ")))")
        }
        var s = Schedule()
        s.full = try string(t, "full", in: section, origin)
        s.incremental = try string(t, "incremental", in: section, origin)
        s.log = try string(t, "log", in: section, origin)
        s.verify = try string(t, "verify", in: section, origin)
        s.prune = try string(t, "prune", in: section, origin)
        s.timeZone = try string(t, "time_zone", in: section, origin)
        if let zone = s.timeZone, TimeZone(identifier: zone) == nil {
            throw VaultError.invalidArgument("\(origin): \(section).time_zone: unknown time zone '\(zone)' (use an IANA name like Europe/Berlin)")
        }
        return s
    }

    private static func parseAgent(_ t: TOMLTable, _ origin: String) throws -> AgentSettings {
        for key in t.keys where !AgentSettings.keys.contains(key) {
            throw VaultError.invalidArgument("\(origin): unknown key agent.\(key) (expected \(AgentSettings.keys.joined(separator: ", ")))")
        }
        func number(_ key: String, positive: Bool = true) throws -> Double? {
            guard let v = t[key] else { return nil }
            guard let n = v.double ?? v.int.map(Double.init), positive ? n > 0 : n >= 0 else {
                throw VaultError.invalidArgument("\(origin): agent.\(key) must be a \(positive ? "positive" : "non-negative") number")
            }
            return n
        }
        func integer(_ key: String, minimum: Int) throws -> Int? {
            guard let v = t[key] else { return nil }
            guard let n = v.int, n >= minimum else {
                throw VaultError.invalidArgument("\(origin): agent.\(key) must be a whole number of at least \(minimum)")
            }
            return n
        }
        var a = AgentSettings()
        if let listen = try string(t, "listen", in: "agent", origin) {
            if !listen.isEmpty {
                guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                      (0...65535).contains(port), colon != listen.startIndex else {
                    throw VaultError.invalidArgument("\(origin): agent.listen must be HOST:PORT (e.g. 127.0.0.1:9466), or \"\" for no HTTP server")
                }
            }
            a.listen = listen
        }
        a.stateDir = try string(t, "state_dir", in: "agent", origin)
        a.timeZone = try string(t, "time_zone", in: "agent", origin)
        if let zone = a.timeZone, TimeZone(identifier: zone) == nil {
            throw VaultError.invalidArgument("\(origin): agent.time_zone: unknown time zone '\(zone)' (use an IANA name like Europe/Berlin)")
        }
        a.coffer = try string(t, "coffer", in: "agent", origin)
        if let v = t["webhooks"] {
            if let one = v.string {
                a.webhooks = [one]
            } else if let list = v.array, list.allSatisfy({ $0.string != nil }) {
                a.webhooks = list.map { $0.string! }
            } else {
                throw VaultError.invalidArgument("\(origin): agent.webhooks must be a URL or a list of URLs")
            }
            for url in a.webhooks where !(url.hasPrefix("http://") || url.hasPrefix("https://")) || URL(string: url) == nil {
                throw VaultError.invalidArgument("\(origin): agent.webhooks: '\(url)' is not an http(s) URL")
            }
        }
        if let v = t["catch_up"] {
            guard let b = v.bool else { throw VaultError.invalidArgument("\(origin): agent.catch_up must be true or false") }
            a.catchUp = b
        }
        if let n = try integer("max_concurrent_jobs", minimum: 1) { a.maxConcurrentJobs = n }
        if let n = try integer("webhook_attempts", minimum: 1) { a.webhookAttempts = n }
        if let n = try integer("retry_attempts", minimum: 0) { a.retryAttempts = n }
        if let n = try number("shutdown_grace") { a.shutdownGrace = n }
        if let n = try number("stale_grace", positive: false) { a.staleGrace = n }
        if let n = try number("capture_lag") { a.captureLag = n }
        if let n = try number("retry_delay") { a.retryDelay = n }
        if let n = try number("retry_max_delay") { a.retryMaxDelay = n }
        return a
    }

    static let retentionCounts = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]

    private static func retentionPolicy(_ t: TOMLTable, in section: String, _ origin: String) throws -> RetentionPolicy {
        var policy = RetentionPolicy()
        for key in t.keys {
            let value = t[key]!
            if retentionCounts.contains(key) {
                guard let n = value.int, n >= 0 else {
                    throw VaultError.invalidArgument("\(origin): \(section).\(key) must be a whole number of backups (0 or more)")
                }
                switch key {
                case "keep_last": policy.keepLast = n
                case "keep_hourly": policy.keepHourly = n
                case "keep_daily": policy.keepDaily = n
                case "keep_weekly": policy.keepWeekly = n
                case "keep_monthly": policy.keepMonthly = n
                default: policy.keepYearly = n
                }
            } else if key == "keep_within" || key == "pitr_window" {
                guard let text = value.string, let seconds = RetentionDuration.parse(text), seconds > 0 else {
                    throw VaultError.invalidArgument("\(origin): \(section).\(key) must be a duration such as \"7d\", \"36h\" or \"1w2d\"")
                }
                if key == "keep_within" { policy.keepWithin = seconds } else { policy.pitrWindow = seconds }
            } else if key == "timezone" {
                guard let text = value.string, let zone = TimeZone(identifier: text) else {
                    throw VaultError.invalidArgument("\(origin): \(section).timezone must be a time zone name such as \"Europe/Berlin\" or \"UTC\"")
                }
                policy.timeZone = zone
            } else {
                throw VaultError.invalidArgument(
                    "\(origin): unknown key \(section).\(key) (expected \((retentionCounts + ["keep_within", "pitr_window", "timezone"]).joined(separator: ", ")))")
            }
        }
        guard policy.hasRules else {
            throw VaultError.invalidArgument("\(origin): \(section) has no rule: give at least one of keep_last ... keep_yearly, keep_within, pitr_window")
        }
        return policy
    }

    private static func pruneSettings(_ t: TOMLTable, _ origin: String) throws -> PruneSettings {
        var settings = PruneSettings()
        for key in t.keys {
            let value = t[key]!
            switch key {
            case "repack_threshold":
                guard let x = value.double ?? value.int.map(Double.init), x > 0, x <= 1 else {
                    throw VaultError.invalidArgument("\(origin): prune.repack_threshold must be a fraction above 0 and at most 1 (e.g. 0.5)")
                }
                settings.repackThreshold = x
            case "grace", "clock_skew":
                guard let text = value.string, let seconds = RetentionDuration.parse(text) else {
                    throw VaultError.invalidArgument("\(origin): prune.\(key) must be a duration such as \"1h\" or \"0s\"")
                }
                if key == "grace" { settings.grace = seconds } else { settings.clockSkew = seconds }
            default:
                throw VaultError.invalidArgument("\(origin): unknown key prune.\(key) (expected repack_threshold, grace, clock_skew)")
            }
        }
        return settings
    }

    private static func string(_ table: TOMLTable, _ key: String, in section: String, _ origin: String) throws -> String? {
        guard let value = table[key] else { return nil }
        guard let s = value.string else { throw VaultError.invalidArgument("\(origin): \(section).\(key) must be a string") }
        return s
    }
}
