import Foundation

/// The schema of a logical dump (artifact `schema.json`), read under the snapshot's lock:
/// per database its CREATE DATABASE, tables (with column counts, to catch DDL during the
/// dump) and views, and the data artifacts in the order they were sent.
struct DumpSchema: Codable {
    struct Table: Codable {
        var name: String
        var create: String
        var columns: Int
        /// The data artifact (`data/<db>/<table>.sql`).
        var artifact: String
    }
    struct View: Codable {
        var name: String
        var create: String
    }
    struct Database: Codable {
        var name: String
        var charset: String
        var collation: String
        var tables: [Table]
        var views: [View]
    }
    var server: String
    var databases: [Database]
}

extension DumpSchema.Database {
    /// CREATE DATABASE for this database under `name`.
    func create(as name: String) -> String {
        "CREATE DATABASE \(Connection.quote(name)) DEFAULT CHARACTER SET \(charset) COLLATE \(collation)"
    }
}

/// How dumped rows are written: one INSERT statement of many rows per line (values escaped
/// so that no line end appears inside one), at most about `batchBytes` per statement, so a
/// restore splits on line ends and runs each line as it is.
enum DumpFormat {
    static let batchBytes = 1 << 20
    static let systemDatabases: Set<String> = ["mysql", "information_schema", "performance_schema", "sys"]

    /// The artifact name of a table's rows; names are percent-encoded where they hold a slash.
    static func artifact(database: String, table: String) -> String {
        func safe(_ s: String) -> String {
            s.addingPercentEncoding(withAllowedCharacters: CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/%"))) ?? s
        }
        return "data/\(safe(database))/\(safe(table)).sql"
    }
}
