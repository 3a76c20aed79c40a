import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Restores a logical dump into a running server (the source's connection options, which
/// `--set socket=...` etc. override): databases and tables first, then the rows on
/// `restore_connections` connections in parallel (each loading one table at a time, its
/// parts in order: fetchOrder), then views. `database.OLD=NEW` options restore a database under another
/// name. A table that exists already fails the restore before any row is written.
struct LogicalRestore {
    let options: [String: String]
    static let transactionBytes = 64 << 20

    func run(base: BackupDescription, logs: [BackupDescription], from source: ArtifactSource) throws -> RestoreDone {
        // Never fall back to the source's server when told another one in a form not read here.
        if let uri = options["target_uri"] {
            throw MySQLError("the mysql plugin does not read --target-uri (\(uri)); name the server with --set socket=PATH or --set host=H --set port=P (default: the source's server)")
        }
        let settings = try ConnectionSettings(options: options)
        let count = Int(options["restore_connections"] ?? "4") ?? 0
        guard count >= 1, count <= 64 else { throw MySQLError("restore_connections must be 1 to 64") }
        var schemaBytes: [UInt8] = []
        try source.fetch(backup: base.id, name: "schema.json") { schemaBytes += $0 }
        let schema = try JSONDecoder().decode(DumpSchema.self, from: Data(schemaBytes))
        if let charset = schema.rowCharset, charset != DumpFormat.rowCharset {
            throw MySQLError("this dump's rows are in charset \(charset), which this plugin does not restore (a newer plugin wrote it)")
        }
        let rename = renames(schema)
        for old in rename.keys where !schema.databases.contains(where: { $0.name == old }) {
            throw MySQLError("database.\(old): the dump has no database \(old) (it has \(schema.databases.map(\.name).joined(separator: ", ")))")
        }
        // Replay filters the binlog by database, which mariadb-binlog does for one only.
        if !logs.isEmpty && schema.databases.count != 1 {
            throw MySQLError("a point-in-time restore of a logical dump needs a dump of one database (option databases); this one has \(schema.databases.count)")
        }
        // restore_binlog = off: the rows are not written to the server's binlog (as myloader
        // does by default): faster, but replicas of this server do not get them.
        let binlogOption = options["restore_binlog"] ?? "on"
        guard binlogOption == "on" || binlogOption == "off" else { throw MySQLError("restore_binlog must be on or off") }
        let logRows = binlogOption == "on"
        let main = try Connection(settings)
        try main.execute("SET SESSION foreign_key_checks = 0")

        for db in schema.databases {
            let target = rename[db.name] ?? db.name
            let exists = try main.value("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = \(main.literal(target))") != "0"
            if !exists {
                try main.execute(db.create(as: target))
            }
            try main.execute("USE \(Connection.quote(target))")
            for table in db.tables {
                do {
                    try main.execute(table.create)
                } catch let error as MySQLError where error.code == 1050 {
                    throw MySQLError("table \(target).\(table.name) exists already; restore into another database (--set database.\(db.name)=NEW) or drop it")
                }
            }
        }

        // Rows: lines (one INSERT each) go to the workers with the database they belong to.
        // Each table goes to one worker (fetchOrder), as myloader does: two connections
        // appending to one table's last page wait on each other.
        let workers = try (0..<count).map { _ in try Connection(settings) }
        let queues = workers.map { _ in BoundedQueue<(String, [UInt8])>(capacity: max(16 << 20, (64 << 20) / count)) }
        @Sendable func failAll(_ error: Error) { for q in queues { q.fail(error) } }
        let group = DispatchGroup()
        for (w, queue) in zip(workers, queues) {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    try w.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
                    // The rows' bytes go back unconverted, in the charset they were read in.
                    if let charset = schema.rowCharset { try w.execute("SET NAMES \(charset)") }
                    // The dump's escapes are backslashes.
                    let mode = try w.value("SELECT @@SESSION.sql_mode") ?? ""
                    if mode.contains("NO_BACKSLASH_ESCAPES") {
                        let kept = mode.split(separator: ",").filter { $0 != "NO_BACKSLASH_ESCAPES" }.joined(separator: ",")
                        try w.execute("SET SESSION sql_mode = \(w.literal(kept))")
                    }
                    if !logRows { try w.execute("SET SESSION sql_log_bin = 0") }
                    // Many statements a transaction: a commit each (a redo log flush, and a
                    // binlog group) was most of the server's waiting.
                    try w.execute("SET SESSION autocommit = 0")
                    var current = ""
                    var uncommitted = 0
                    while let (db, line) = try queue.pop() {
                        if db != current {
                            try w.execute("USE \(Connection.quote(db))")
                            current = db
                        }
                        try line.withUnsafeBytes { try w.execute(bytes: $0) }
                        uncommitted += line.count
                        if uncommitted >= LogicalRestore.transactionBytes {
                            try w.execute("COMMIT")
                            uncommitted = 0
                        }
                    }
                    try w.execute("COMMIT")
                } catch {
                    failAll(error)
                }
            }.start()
        }
        let tables = schema.databases.flatMap { db in db.tables.map { (rename[db.name] ?? db.name, $0) } }
        let names = base.artifacts.map(\.name)
        let order = LogicalRestore.fetchOrder(parts: tables.map { DumpFormat.parts(of: $0.1.artifact, in: names) }, workers: count)
        var pending: [UInt8] = []
        do {
            try source.fetch(order.map { FetchItem(backup: base.id, name: $0.name) }) { i, piece in
                switch piece {
                case .begin:
                    pending.removeAll(keepingCapacity: true)
                case .data(let piece):
                    piece.withUnsafeBytes { pending += $0 }
                    var start = 0
                    let (table, worker) = (order[i].table, order[i].worker)
                    while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                        try queues[worker].push((tables[table].0, Array(pending[start..<nl])), size: nl - start)
                        start = nl + 1
                    }
                    pending.removeFirst(start)
                case .end:
                    guard pending.isEmpty else { throw MySQLError("\(order[i].name) ends inside a statement") }
                }
            }
            for q in queues { q.close() }
        } catch {
            failAll(error)
            group.wait()
            throw error
        }
        group.wait()
        // A worker's failure is in the queues; popping surfaces it.
        for q in queues { _ = try q.pop() }

        for db in schema.databases {
            let target = rename[db.name] ?? db.name
            try main.execute("USE \(Connection.quote(target))")
            // Views may select from views: create in passes until none is left or none succeeds.
            var left = db.views
            while !left.isEmpty {
                var failed: [DumpSchema.View] = []
                var lastError: Error?
                for view in left {
                    var create = view.create
                    if target != db.name {
                        create = create.replacingOccurrences(of: Connection.quote(db.name) + ".", with: Connection.quote(target) + ".")
                    }
                    do { try main.execute(create) } catch { failed.append(view); lastError = error }
                }
                if failed.count == left.count, let lastError { throw lastError }
                left = failed
            }
        }
        var replayed: [String: String] = [:]
        if !logs.isEmpty, let db = schema.databases.first {
            var replayOptions = options
            // MariaDB's mariadb-binlog filters by the name in the binlog, then rewrites it.
            replayOptions["replay_database"] = db.name
            replayed = try BinlogReplay(options: replayOptions, base: base, slices: logs)
                .run(from: source, into: settings, rewrite: rename.filter { $0.key == db.name })
        }
        return RestoreDone(positions: replayed.merging(["base": base.id, "binlog_file": base.positions["binlog_file"] ?? "",
                                       "binlog_pos": base.positions["binlog_pos"] ?? "", "gtid": base.positions["gtid"] ?? "",
                                       "databases": schema.databases.map { rename[$0.name] ?? $0.name }.joined(separator: ",")]) { _, new in new })
    }

    /// The order to fetch the tables' parts in, and the worker each goes to. Each worker
    /// loads one table at a time, all of its parts (two connections appending to one table's
    /// last page wait on each other); the workers' current tables take turns a part each, so
    /// that the one stream from the agent keeps every connection fed. A worker done with its
    /// table takes the next table not yet begun.
    static func fetchOrder(parts: [[String]], workers: Int) -> [(name: String, table: Int, worker: Int)] {
        var order: [(name: String, table: Int, worker: Int)] = []
        var current: [(table: Int, part: Int)?] = Array(repeating: nil, count: max(1, workers))
        var nextTable = 0
        while true {
            var progressed = false
            for w in current.indices {
                if current[w] == nil, nextTable < parts.count {
                    current[w] = (nextTable, 0)
                    nextTable += 1
                }
                guard let (table, part) = current[w] else { continue }
                order.append((parts[table][part], table, w))
                current[w] = part + 1 < parts[table].count ? (table, part + 1) : nil
                progressed = true
            }
            if !progressed { return order }
        }
    }

    /// database.OLD=NEW options.
    private func renames(_ schema: DumpSchema) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in options where k.hasPrefix("database.") { out[String(k.dropFirst("database.".count))] = v }
        return out
    }
}
