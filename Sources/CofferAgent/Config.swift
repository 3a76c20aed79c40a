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
    }

    public var vault = VaultSettings()
    public var sources: [String: Source] = [:]

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
        for key in table.keys where !["vault", "source"].contains(key) {
            throw VaultError.invalidArgument("\(origin): unknown section or key '\(key)' (expected [vault] and [source.NAME])")
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
                for key in t.keys where key != "engine" {
                    let value = t[key]!
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
                config.sources[name] = Source(name: name, engine: engine, pluginTimeout: timeout, options: options)
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

    private static func string(_ table: TOMLTable, _ key: String, in section: String, _ origin: String) throws -> String? {
        guard let value = table[key] else { return nil }
        guard let s = value.string else { throw VaultError.invalidArgument("\(origin): \(section).\(key) must be a string") }
        return s
    }
}
