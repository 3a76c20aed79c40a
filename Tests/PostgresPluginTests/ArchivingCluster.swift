import CofferFixtures
import Foundation
import XCTest

/// A real PostgreSQL 15 that archives into a fresh vault through `coffer wal-push`, with
/// the coffer CLI run as the postgres OS user, exactly as archive_command runs it.
final class ArchivingCluster {
    let work: String
    let config: String
    let server: PostgresServer
    static var coffer: String { BuildProducts.directory(containing: "coffer") + "/coffer" }

    /// - Parameters:
    ///   - remote: the source names no data_directory, so base backups are taken in remote
    ///     mode (BASE_BACKUP over a replication connection);
    ///   - tls: the source connects over TCP with TLS required (the server gets a certificate).
    init(remote: Bool = false, tls: Bool = false) throws {
        work = try PostgresServer.scratchDirectory()
        config = work + "/coffer.toml"
        server = try PostgresServer(settings: [
            "archive_mode": "on",
            "archive_command": "'\(ArchivingCluster.coffer) wal-push --config \(config) %p'",
            "track_commit_timestamp": "on",
        ], tls: tls)
        try "test passphrase\n".write(toFile: work + "/passphrase", atomically: true, encoding: .utf8)
        try """
            [vault]
            path = "\(work)/vault"
            passphrase_file = "\(work)/passphrase"

            [source.main]
            engine = "postgres"
            connection = "\(tls ? server.tlsConninfo : server.conninfo)"
            \(remote ? "" : "data_directory = \"\(server.dataDirectory)\"")
            """.write(toFile: config, atomically: true, encoding: .utf8)
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["postgres:postgres", config, work + "/passphrase"]) }
        try run("vault", "init")
    }

    deinit { try? FileManager.default.removeItem(atPath: work) }

    /// A cluster with an empty `ledger` table and a base backup taken of it: where every
    /// point-in-time test starts.
    static func withBackedUpLedger() throws -> ArchivingCluster {
        let cluster = try ArchivingCluster()
        try cluster.server.sql("CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL)")
        try cluster.run("backup", "--source", "main")
        return cluster
    }

    /// `coffer ARGS --config CONFIG` as the postgres OS user: status and output.
    func coffer(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let argv = [ArchivingCluster.coffer] + args + ["--config", config]
        if getuid() == 0 { return try FixtureProcess.capture("/usr/sbin/runuser", ["-u", "postgres", "--"] + argv) }
        return try FixtureProcess.capture(argv[0], Array(argv.dropFirst()))
    }

    /// Like `coffer`, failing the test unless it exits 0; returns stdout.
    @discardableResult
    func run(_ args: String...) throws -> String {
        let r = try coffer(args)
        guard r.status == 0 else { throw FixtureError("coffer \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
        return r.stdout
    }

    /// Closes the current WAL segment and waits (polling the archiver's own statistics, with
    /// a deadline) until it and everything before it is in the vault.
    func archiveAll(on server: PostgresServer? = nil) throws {
        let server = server ?? self.server
        let segment = try value(server, "SELECT pg_walfile_name(pg_switch_wal())")
        let deadline = Date().addingTimeInterval(120)
        while true {
            let state = try server.sql("SELECT coalesce(last_archived_wal, '') || '|' || failed_count || '|' || coalesce(last_failed_wal, '') FROM pg_stat_archiver")
                .split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            // Segment names compare in order within a timeline (and later timelines sort later).
            if state[0] >= segment && !state[0].hasSuffix(".history") && !state[0].hasSuffix(".partial") { return }
            if Date() > deadline {
                throw FixtureError("\(segment) was not archived within 120 s (archiver: \(state)); server log:\n\(server.log.suffix(3000))")
            }
            usleep(50_000)
        }
    }

    /// Restores into a new directory with --start and returns the running restored server.
    func restore(_ name: String, _ args: [String]) throws -> (server: PostgresServer, output: String) {
        let socket = try PostgresServer.scratchDirectory()
        let target = work + "/" + name
        let r = try coffer(["restore", "--source", "main", "--target-dir", target, "--start",
                            "--set", "pg.unix_socket_directories=\(socket)"] + args)
        let restored = PostgresServer(adopting: target, socketDirectory: socket)
        guard r.status == 0 else {
            let log = (try? String(contentsOfFile: target + "/coffer-recovery.log", encoding: .utf8)) ?? ""
            throw FixtureError("restore \(args) exited \(r.status): \(r.stderr)\nrecovery log:\n\(log.suffix(3000))")
        }
        return (restored, r.stdout)
    }

    /// One value from psql, without its line end.
    func value(_ server: PostgresServer, _ sql: String) throws -> String { try ArchivingCluster.value(server, sql) }

    static func value(_ server: PostgresServer, _ sql: String) throws -> String {
        try server.sql(sql).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The ledger's rows as "id|note", in id order.
    static func rows(_ server: PostgresServer, where condition: String = "true") throws -> [String] {
        try server.sql("SELECT id || '|' || note FROM ledger WHERE \(condition) ORDER BY id")
            .split(separator: "\n").map(String.init)
    }

    /// The midpoint between the commit times of two ledger rows, as PostgreSQL writes times.
    static func timeBetween(_ server: PostgresServer, _ a: Int, _ b: Int) throws -> String {
        try value(server, """
            SELECT to_char((ta + (tb - ta) / 2) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' FROM
              (SELECT pg_xact_commit_timestamp(xmin) AS ta FROM ledger WHERE id = \(a)) x,
              (SELECT pg_xact_commit_timestamp(xmin) AS tb FROM ledger WHERE id = \(b)) y
            """)
    }

    /// Commits rows `range` one transaction each, `gapMillis` apart; each row's note holds
    /// the WAL insert position just before it (so an LSN target between rows is known).
    static func commitRows(_ server: PostgresServer, _ range: ClosedRange<Int>, gapMillis: Int = 2) throws {
        try server.sql("""
            DO $$ BEGIN
              FOR i IN \(range.lowerBound)..\(range.upperBound) LOOP
                INSERT INTO ledger VALUES (i, 'before ' || pg_current_wal_insert_lsn());
                COMMIT;
                PERFORM pg_sleep(\(Double(gapMillis) / 1000));
              END LOOP;
            END $$
            """)
    }
}
