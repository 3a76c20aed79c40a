import CMariaDB
import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// A logical full backup: `dump_connections` connections that share one consistent
/// snapshot. A brief lock on its own connection (FLUSH TABLES WITH READ LOCK, or MariaDB's
/// BACKUP STAGE BLOCK_COMMIT with dump_lock = backup_stage) while every connection starts its snapshot
/// transaction, the schema is read, and the lock goes. Then each table's rows are read on
/// some connection and sent as one artifact (batched INSERT lines, CDC-chunked).
///
/// DDL during the dump: a table whose definition differs from the one read under the lock
/// by the time its rows are read (or that InnoDB reports changed, error 1412) fails the
/// dump, naming the table; nothing is recorded.
struct LogicalDump {
    let options: [String: String]
    let settings: ConnectionSettings

    func run(into sink: ArtifactSink) throws -> BackupDone {
        let count = Int(options["dump_connections"] ?? "2") ?? 0
        guard count >= 1, count <= 64 else { throw MySQLError("dump_connections must be 1 to 64") }
        let connections = try (0..<count).map { _ in try Connection(settings) }
        let main = connections[0]
        let mariadb = main.isMariaDB
        // The lock has a connection of its own, apart from the snapshots. With BACKUP STAGE
        // on a dump connection the load test caught dumps holding rows newer than their
        // position (cause not established; docs/engines/mysql.md). FTWRL, which waits for
        // commits in flight, is the default.
        let lock = try Connection(settings)
        let started = Date()

        let lockKind = options["dump_lock"] ?? "ftwrl"
        guard lockKind == "ftwrl" || lockKind == "backup_stage" else { throw MySQLError("dump_lock must be ftwrl or backup_stage") }
        let useBackupStage = lockKind == "backup_stage" && mariadb
        if useBackupStage {
            try lock.execute("BACKUP STAGE START")
            try lock.execute("BACKUP STAGE BLOCK_COMMIT")
        } else {
            try lock.execute("FLUSH TABLES WITH READ LOCK")
        }
        var positions: [String: String] = [:]
        let schema: DumpSchema
        do {
            for c in connections {
                try c.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                try c.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            }
            if mariadb {
                // The binlog position of each connection's snapshot (MariaDB keeps it with
                // the snapshot): they must all be the same, and it is the dump's position.
                // SHOW MASTER STATUS under BLOCK_COMMIT was seen to lag commits already
                // visible to the snapshot.
                var seen: Set<String> = []
                for c in connections {
                    let status = Dictionary(try c.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'").compactMap { row in
                        row[0].map { ($0.lowercased(), row[1] ?? "") } }, uniquingKeysWith: { a, _ in a })
                    guard let file = status["binlog_snapshot_file"], !file.isEmpty, let pos = status["binlog_snapshot_position"] else {
                        throw MySQLError("the server reports no binlog snapshot position: its binary log is off (log_bin)")
                    }
                    seen.insert("\(file):\(pos)")
                    positions["binlog_file"] = file
                    positions["binlog_pos"] = pos
                }
                guard seen.count == 1 else {
                    throw MySQLError("the dump's connections got different snapshots (\(seen.sorted().joined(separator: ", "))); nothing is recorded")
                }
                positions["gtid"] = try main.value("SELECT BINLOG_GTID_POS(\(main.literal(positions["binlog_file"]!)), \(positions["binlog_pos"]!))") ?? ""
            } else {
                // FLUSH TABLES WITH READ LOCK waits for commits to finish, so here the
                // binlog position and the executed GTIDs match the snapshots.
                guard let status = try lock.query("SHOW MASTER STATUS").first, let file = status[0], let pos = status[1] else {
                    throw MySQLError("SHOW MASTER STATUS returned nothing: the server's binary log is off (log_bin)")
                }
                positions["binlog_file"] = file
                positions["binlog_pos"] = pos
                positions["gtid"] = try lock.value("SELECT @@gtid_executed") ?? ""
            }
            positions["consistent_time"] = String(Int64(Date().timeIntervalSince1970 * 1_000_000))
            schema = try readSchema(main)
        } catch {
            try? lock.execute(useBackupStage ? "BACKUP STAGE END" : "UNLOCK TABLES")
            throw error
        }
        try lock.execute(useBackupStage ? "BACKUP STAGE END" : "UNLOCK TABLES")

        try sink.artifact(name: "schema.json", chunker: "cdc") { out in
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .prettyPrinted]
            try out.write(Array(try e.encode(schema)))
        }
        let tables = schema.databases.flatMap { db in db.tables.map { (db.name, $0) } }
        // Rows come as each column stores them: converting every string to utf8mb4 here and
        // back at the restore was a third of the server's CPU in a restore (latin1 columns).
        for c in connections { try c.execute("SET SESSION character_set_results = \(DumpFormat.rowCharset)") }
        try dumpRows(tables, connections: connections, sink: sink)
        var rows = 0
        for c in connections { try c.execute("COMMIT") }
        rows = tables.count
        return BackupDone(positions: positions,
                          metadata: ["method": "logical", "server_version": main.serverVersion,
                                     "started": ISO8601DateFormatter().string(from: started),
                                     "databases": schema.databases.map(\.name).joined(separator: "\n"),
                                     "tables": String(rows)])
    }

    /// Databases to dump: option `databases` (comma-separated), else all but the system ones.
    private func readSchema(_ c: Connection) throws -> DumpSchema {
        var names = try c.query("SHOW DATABASES").compactMap { $0[0] }.filter { !DumpFormat.systemDatabases.contains($0) }
        if let wanted = options["databases"] {
            let list = wanted.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for name in list where !names.contains(name) { throw MySQLError("database \(name) (option databases) does not exist") }
            names = list
        }
        var databases: [DumpSchema.Database] = []
        for db in names.sorted() {
            let q = Connection.quote(db)
            let charset = try c.query("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = \(c.literal(db))").first
            var tables: [DumpSchema.Table] = []
            var views: [DumpSchema.View] = []
            for row in try c.query("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = \(c.literal(db)) ORDER BY TABLE_NAME") {
                guard let name = row[0], let type = row[1] else { continue }
                let qt = "\(q).\(Connection.quote(name))"
                if type == "VIEW" {
                    views.append(.init(name: name, create: try c.query("SHOW CREATE VIEW \(qt)").first?[1] ?? ""))
                } else if type == "BASE TABLE" || type == "SYSTEM VERSIONED" {
                    let columns = Int(try c.value("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = \(c.literal(db)) AND TABLE_NAME = \(c.literal(name))") ?? "") ?? 0
                    tables.append(.init(name: name, create: try tableDefinition(c, qt), columns: columns,
                                        artifact: DumpFormat.artifact(database: db, table: name)))
                }
            }
            databases.append(.init(name: db, charset: charset?[0] ?? "utf8mb4", collation: charset?[1] ?? "utf8mb4_general_ci",
                                   tables: tables, views: views))
        }
        return DumpSchema(server: c.serverVersion, databases: databases, rowCharset: DumpFormat.rowCharset)
    }

    private func tableDefinition(_ c: Connection, _ qualified: String) throws -> String {
        guard let create = try c.query("SHOW CREATE TABLE \(qualified)").first?[1] else {
            throw MySQLError("SHOW CREATE TABLE \(qualified) returned nothing")
        }
        return create
    }

    /// Reads tables on all connections at once, each table's lines buffered up to 32 MiB
    /// ahead of the sink (one stream), which takes a part of each table being read in turn.
    /// An empty line in a table's queue ends a part (DumpFormat.endsPart).
    private func dumpRows(_ tables: [(String, DumpSchema.Table)], connections: [Connection], sink: ArtifactSink) throws {
        let queues = tables.map { _ in BoundedQueue<[UInt8]>(capacity: 32 << 20) }
        let next = NSLock()
        nonisolated(unsafe) var cursor = 0
        let group = DispatchGroup()
        for c in connections {
            group.enter()
            Thread {
                defer { group.leave() }
                while true {
                    next.lock()
                    let i = cursor
                    cursor += 1
                    next.unlock()
                    guard i < tables.count else { return }
                    do {
                        try TableReader(connection: c, database: tables[i].0, table: tables[i].1).read { line, startsPart in
                            if startsPart { try queues[i].push([], size: 0) }
                            try queues[i].push(line, size: line.count)
                        }
                        queues[i].close()
                    } catch {
                        for q in queues { q.fail(error) }
                        return
                    }
                }
            }.start()
        }
        // The stream takes a part of each table being read in turn. Table after table, every
        // connection but the one whose table was being sent filled its queue and waited: the
        // dump ran about one table at a time. The tables in turn are the first unfinished ones,
        // as many as connections: each is being read, or read to its end already, so the
        // queue waited on always fills or ends.
        do {
            var parts = [Int](repeating: 1, count: tables.count)
            var window = Array(tables.indices.prefix(connections.count))
            var next = window.count
            var turn = 0
            while !window.isEmpty {
                let i = window[turn % window.count]
                var ended = true
                try sink.artifact(name: DumpFormat.part(parts[i], of: tables[i].1.artifact), chunker: "cdc") { out in
                    while let line = try queues[i].pop() {
                        if line.isEmpty {
                            ended = false
                            return
                        }
                        try out.write(line)
                    }
                }
                parts[i] += 1
                if ended {
                    let at = turn % window.count
                    if next < tables.count {
                        window[at] = next
                        next += 1
                    } else {
                        window.remove(at: at)
                        continue  // the same position now holds the next table in turn
                    }
                }
                turn += 1
            }
        } catch {
            for q in queues { q.fail(error) }
            group.wait()
            throw error
        }
        group.wait()
    }
}

/// Reads one table's rows in the dump's snapshot and formats them as INSERT lines.
struct TableReader {
    let connection: Connection
    let database: String
    let table: DumpSchema.Table

    /// Hands each line to `emit`, saying whether it begins a new part (never the first).
    func read(_ emit: (_ line: [UInt8], _ startsPart: Bool) throws -> Void) throws {
        let qualified = "\(Connection.quote(database)).\(Connection.quote(table.name))"
        let c = connection
        let now = try c.query("SHOW CREATE TABLE \(qualified)").first?[1]
        guard now == table.create else { throw changed() }
        let sql = "SELECT /* coffer dump */ * FROM \(qualified)"
        let h = c.handle
        guard sql.withCString({ mysql_real_query(h, $0, UInt(strlen($0))) }) == 0 else { throw translate(c.failure(sql)) }
        guard let result = mysql_use_result(h) else { throw translate(c.failure(sql)) }
        defer { mysql_free_result(result) }
        let n = Int(mysql_num_fields(result))
        guard n == table.columns else { throw changed() }
        let fields = mysql_fetch_fields(result)!
        let kinds = (0..<n).map { ValueKind(fields[$0]) }
        let head = Array("INSERT INTO \(Connection.quote(table.name)) VALUES ".utf8)
        var line = DumpLine(capacity: DumpFormat.maxStatementBytes + (1 << 16))
        line.reset(to: head)
        var rowsInLine = 0
        var partBytes = 0
        var partEnded = false
        // A part's end is only noted here: a new part starts with the next line, so that
        // no empty part follows the last row.
        func send(_ line: inout DumpLine, lastRow: Int) throws {
            line.append(UInt8(ascii: "\n"))
            try emit(line.bytes, partEnded)
            partBytes = partEnded ? line.count : partBytes + line.count
            partEnded = DumpFormat.endsPart(length: partBytes, lastRowChecksum: { line.checksum(from: lastRow) })
            line.reset(to: head)
            rowsInLine = 0
        }
        while let row = mysql_fetch_row(result) {
            let lengths = mysql_fetch_lengths(result)!
            if rowsInLine > 0 { line.append(UInt8(ascii: ",")) }
            let rowStart = line.count
            line.append(UInt8(ascii: "("))
            for i in 0..<n {
                if i > 0 { line.append(UInt8(ascii: ",")) }
                guard let p = row[i] else { line.append(TableReader.null); continue }
                let bytes = UnsafeRawBufferPointer(start: p, count: Int(lengths[i]))
                switch kinds[i] {
                case .number: line.append(raw: bytes)
                case .hex: line.appendHex(bytes)
                case .binary: line.appendQuoted(bytes, binary: true)
                case .text: line.appendQuoted(bytes, binary: false)
                }
            }
            line.append(UInt8(ascii: ")"))
            rowsInLine += 1
            if DumpFormat.endsStatement(length: line.count, rowBytes: line.count - rowStart, rowChecksum: { line.checksum(from: rowStart) }) {
                try send(&line, lastRow: rowStart)
            }
        }
        if mysql_errno(h) != 0 { throw translate(c.failure(sql)) }
        if rowsInLine > 0 { try send(&line, lastRow: line.count) }
    }

    static let null = Array("NULL".utf8)

    private func changed() -> MySQLError {
        MySQLError("table \(database).\(table.name) was changed (DDL) during the dump, after its snapshot was fixed; the dump is abandoned and nothing is recorded: run the backup again", code: 1412)
    }

    /// ER_TABLE_DEF_CHANGED (1412) and a table dropped meanwhile (1146) are DDL during the dump.
    private func translate(_ error: MySQLError) -> MySQLError {
        error.code == 1412 || error.code == 1146 ? changed() : error
    }
}

/// How a column's text-protocol value is written back as a literal: numbers as they are,
/// BIT and geometry values as X'…' (which they take as numbers or WKB), binary strings as
/// _binary'…' (escaped: hex doubled the dump of binary columns) and text as '…'.
enum ValueKind {
    case number, hex, binary, text

    init(_ field: MYSQL_FIELD) {
        switch field.type {
        case MYSQL_TYPE_DECIMAL, MYSQL_TYPE_NEWDECIMAL, MYSQL_TYPE_TINY, MYSQL_TYPE_SHORT, MYSQL_TYPE_LONG,
             MYSQL_TYPE_FLOAT, MYSQL_TYPE_DOUBLE, MYSQL_TYPE_LONGLONG, MYSQL_TYPE_INT24, MYSQL_TYPE_YEAR:
            self = .number
        case MYSQL_TYPE_BIT, MYSQL_TYPE_GEOMETRY:
            self = .hex
        case MYSQL_TYPE_BLOB, MYSQL_TYPE_TINY_BLOB, MYSQL_TYPE_MEDIUM_BLOB, MYSQL_TYPE_LONG_BLOB,
             MYSQL_TYPE_STRING, MYSQL_TYPE_VAR_STRING, MYSQL_TYPE_VARCHAR:
            // charset 63 is binary: BLOB, BINARY, VARBINARY.
            self = field.charsetnr == 63 ? .binary : .text
        default:
            self = .text
        }
    }
}
