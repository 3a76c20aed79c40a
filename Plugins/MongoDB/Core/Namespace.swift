import Foundation

/// A database and collection, and how their names go into artifact names and map onto a
/// restore target (`database.OLD=NEW`).
public struct Namespace: Hashable, Sendable, CustomStringConvertible {
    public var database: String
    public var collection: String

    public init(database: String, collection: String) {
        self.database = database
        self.collection = collection
    }

    /// "db.coll" as the oplog's `ns` writes it (a collection name may itself contain dots).
    public init?(ns: String) {
        guard let dot = ns.firstIndex(of: ".") else { return nil }
        database = String(ns[..<dot])
        collection = String(ns[ns.index(after: dot)...])
    }

    public var description: String { "\(database).\(collection)" }

    /// Whether a backup leaves this namespace out: the server's own databases and admin's
    /// system collections (users and roles belong to the deployment, not the data).
    public static func excluded(database: String) -> Bool { database == "local" || database == "config" }

    public var excluded: Bool {
        Namespace.excluded(database: database) || collection.hasPrefix("system.")
    }

    /// Artifact names carry names percent-encoded ('/' and '%'), so any name fits one path part.
    static func encode(_ s: String) -> String {
        s.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
    }

    static func decode(_ s: String) -> String {
        s.replacingOccurrences(of: "%2F", with: "/").replacingOccurrences(of: "%25", with: "%")
    }

    public var dataArtifact: String { "data/\(Namespace.encode(database))/\(Namespace.encode(collection)).bson" }
    public var metadataArtifact: String { "meta/\(Namespace.encode(database))/\(Namespace.encode(collection)).bson" }

    /// The namespace a `meta/…` or `data/…` artifact name stands for.
    public init?(artifact: String) {
        let parts = artifact.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "meta" || parts[0] == "data", parts[2].hasSuffix(".bson") else { return nil }
        database = Namespace.decode(String(parts[1]))
        collection = Namespace.decode(String(parts[2].dropLast(5)))
    }
}

/// Database renames for a restore, from options `database.OLD=NEW`.
public struct DatabaseMap: Sendable {
    let renames: [String: String]

    public init(options: [String: String]) {
        var r: [String: String] = [:]
        for (k, v) in options where k.hasPrefix("database.") { r[String(k.dropFirst(9))] = v }
        renames = r
    }

    public func map(_ database: String) -> String { renames[database] ?? database }
    public func map(_ ns: Namespace) -> Namespace { Namespace(database: map(ns.database), collection: ns.collection) }
}
