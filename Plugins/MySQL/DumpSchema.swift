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
    /// The character set the rows were read in and must be written back in: "binary" (each
    /// column's own bytes, unconverted) for dumps since stop 13; absent in older dumps, whose
    /// rows were read as utf8mb4.
    var rowCharset: String?
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
    /// See DumpSchema.rowCharset.
    static let rowCharset = "binary"
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

    /// A table's rows are cut into parts, one artifact each, so that a restore can feed every
    /// connection from one stream: the parts of the tables being loaded are fetched in turn
    /// (LogicalRestore.fetchOrder). One table in one artifact left all but one connection
    /// idle while that table streamed in. A part ends after a statement chosen by its last
    /// row's CRC alone (other bits than the statement's): one statement in eight, about one
    /// part every 8 MiB, the same cuts in every dump of unchanged rows. No minimum size: with
    /// one (8 MiB, until stop 15), a changed row that moved the bytes counted from the part's
    /// start could move the next cut to another statement, then every cut after it, and each
    /// moved part stored its first and last chunks again (a 1% change once stored 19 MB of a
    /// 50 MB dump). Statements end where their rows say however long the part is, so cuts
    /// come back to the same rows right after a change. `maxPartBytes` bounds a run of
    /// unlucky statements (one part in 5,000 at ~1 MiB statements).
    static let maxPartBytes = 64 << 20

    static func endsPart(length: Int, lastRowChecksum: () -> UInt32) -> Bool {
        length >= maxPartBytes || (lastRowChecksum() >> 20) & 7 == 0
    }

    /// The artifact of a table's part (1 is the first: the table's own artifact name).
    static func part(_ n: Int, of artifact: String) -> String {
        n == 1 ? artifact : "\(artifact).\(n)"
    }

    /// The parts of a table among a backup's artifacts, in order (dumps before stop 13 have
    /// one).
    static func parts(of artifact: String, in names: [String]) -> [String] {
        let more = names.compactMap { name -> Int? in
            guard name.hasPrefix(artifact + "."), let n = Int(name.dropFirst(artifact.count + 1)), n >= 2 else { return nil }
            return n
        }
        return [artifact] + more.sorted().map { part($0, of: artifact) }
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
