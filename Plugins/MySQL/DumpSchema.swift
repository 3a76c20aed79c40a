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
/// so that no line end appears inside one), so a restore splits on line ends and runs each
/// line as it is.
enum DumpFormat {
    static let minStatementBytes = 768 << 10
    static let maxStatementBytes = 4 << 20

    /// Whether the statement ends after the row just written. Past `minStatementBytes`, a row
    /// ends it when its CRC (of its own bytes, so the same row decides the same way in every
    /// dump) falls below a bar that grows with the row's size: about one end every 256 KiB of
    /// rows, whatever their size. Statements cut at a byte count instead all moved once a
    /// changed row changed length (escapes vary), and a second dump then shared almost
    /// nothing past the change with the first.
    static func endsStatement(length: Int, rowBytes: Int, rowChecksum: () -> UInt32) -> Bool {
        if length >= maxStatementBytes { return true }
        guard length >= minStatementBytes else { return false }
        return Int(rowChecksum() & 0xFFFFF) < rowBytes * 4
    }
    static let systemDatabases: Set<String> = ["mysql", "information_schema", "performance_schema", "sys"]

    /// The artifact name of a table's rows; names are percent-encoded where they hold a slash.
    static func artifact(database: String, table: String) -> String {
        func safe(_ s: String) -> String {
            s.addingPercentEncoding(withAllowedCharacters: CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/%"))) ?? s
        }
        return "data/\(safe(database))/\(safe(table)).sql"
    }
}
