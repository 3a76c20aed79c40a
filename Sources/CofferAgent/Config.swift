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
        /// `[source.NAME.retention]`: what `coffer prune` keeps; nil leaves the source alone.
        public var retention: RetentionPolicy? = nil
    }

    /// `[prune]`: how garbage collection goes (docs/config.md).
    public struct PruneSettings: Sendable, Equatable {
        public var repackThreshold: Double?
        public var grace: TimeInterval?
        public var clockSkew: TimeInterval?
    }

    public var vault = VaultSettings()
    public var sources: [String: Source] = [:]
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
        for key in table.keys where !["vault", "source", "prune"].contains(key) {
            throw VaultError.invalidArgument("\(origin): unknown section or key '\(key)' (expected [vault], [source.NAME] and [prune])")
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
                var retention: RetentionPolicy?
                for key in t.keys where key != "engine" {
                    let value = t[key]!
                    if key == "retention" {
                        guard let r = value.table else {
                            throw VaultError.invalidArgument("\(origin): source.\(name).retention must be a table ([source.\(name).retention])")
                        }
                        retention = try retentionPolicy(r, in: "source.\(name).retention", origin)
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
                                              retention: retention)
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
