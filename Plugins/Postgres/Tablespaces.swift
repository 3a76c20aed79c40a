import Foundation

/// Where a base backup's tablespaces go on restore: where they were, or where the restore
/// is told (`tablespace.NAME=DIR` or `tablespace.OID=DIR`). Their files are stored under
/// `pg_tblspc/OID/`; restored, `pg_tblspc/OID` is a link to the location, and
/// `tablespace_map` names the same location (recovery recreates the links from it).
struct Tablespaces {
    struct Entry {
        let oid: String
        let name: String
        let location: String
    }

    let entries: [Entry]

    /// - Parameter recorded: the base backup's `tablespaces` metadata, "OID\tNAME\tLOCATION" lines.
    init(recorded: String, options: [String: String]) throws {
        var entries: [Entry] = []
        var used = Set<String>()
        for line in recorded.split(separator: "\n") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 3 else { continue }
            let location = options["tablespace." + f[1]] ?? options["tablespace." + f[0]] ?? f[2]
            guard location.hasPrefix("/") else { throw PostgresError("tablespace \(f[1]) needs an absolute location, not '\(location)'") }
            entries.append(Entry(oid: f[0], name: f[1], location: location))
            used.insert(f[0])
            used.insert(f[1])
        }
        for key in options.keys where key.hasPrefix("tablespace.") && !used.contains(String(key.dropFirst(11))) {
            throw PostgresError("the backup has no tablespace \(key.dropFirst(11)) (it has: \(entries.map(\.name).joined(separator: ", ")))")
        }
        self.entries = entries
    }

    /// The path a file or directory of the backup (relative to the data directory) goes to.
    func path(_ relative: String, target: String) -> String {
        for e in entries {
            let prefix = "pg_tblspc/" + e.oid
            if relative == prefix { return e.location }
            if relative.hasPrefix(prefix + "/") { return e.location + relative.dropFirst(prefix.count) }
        }
        return target + "/" + relative
    }

    /// Makes each location (refusing one that holds anything unless `existing` allows it)
    /// and links `pg_tblspc/OID` to it.
    func prepare(target: String, existing: String?) throws {
        let fm = FileManager.default
        for e in entries {
            let contents = (try? fm.contentsOfDirectory(atPath: e.location)) ?? []
            if !contents.isEmpty {
                switch existing {
                case "force": for c in contents { try fm.removeItem(atPath: e.location + "/" + c) }
                case "delta": break
                default:
                    throw PostgresError("tablespace \(e.name)'s location \(e.location) is not empty; use --delta or --force, or move it with --set tablespace.\(e.name)=DIR")
                }
            }
            try fm.createDirectory(atPath: e.location, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let link = target + "/pg_tblspc/" + e.oid
            try fm.createDirectory(atPath: target + "/pg_tblspc", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            if (try? fm.destinationOfSymbolicLink(atPath: link)) != nil || fm.fileExists(atPath: link) { try fm.removeItem(atPath: link) }
            try fm.createSymbolicLink(atPath: link, withDestinationPath: e.location)
        }
    }

    /// tablespace_map as recovery reads it: "OID LOCATION" per line.
    func writeMap(target: String) throws {
        guard !entries.isEmpty else { return }
        try entries.map { "\($0.oid) \($0.location)\n" }.joined()
            .write(toFile: target + "/tablespace_map", atomically: true, encoding: .utf8)
    }
}
