import CofferFixtures
import Foundation
import XCTest

/// Remote mode: base backups over a replication connection (BASE_BACKUP), for a plugin that is
/// not on the database host, restored exactly like local ones.
final class RemoteBackupTests: XCTestCase {
    /// A source without data_directory, backed up while a writer commits, with a table in a
    /// tablespace: restored with --start to a time after the backup and to the latest point,
    /// each compared row for row with what the source had committed there.
    func testRemoteBackupUnderWriteLoadRestoresToAPointInTimeAndToLatest() throws {
        let cluster = try ArchivingCluster(remote: true)
        let source = cluster.server
        let space = try source.ownedDirectory("ts")
        try source.sql("CREATE TABLESPACE remote_space LOCATION '\(space)'")
        try source.sql("""
            CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL);
            CREATE TABLE moved (id int PRIMARY KEY, note text NOT NULL) TABLESPACE remote_space;
            INSERT INTO moved SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
            """)
        let moved = try ArchivingCluster.value(source, "SELECT md5(string_agg(id || note, ',' ORDER BY id)) FROM moved")

        // One writer commits rows 1, 2, ... one transaction each (about a thousand a second at
        // most, which keeps the WAL to archive and replay small) until told to stop.
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        writer.arguments = ["-X", "-q", "-h", source.socketDirectory, "-U", "postgres", "-d", "postgres", "-c", """
            DO $$ BEGIN FOR i IN 1..10000000 LOOP
              INSERT INTO ledger VALUES (i, 'during ' || i); COMMIT;
              PERFORM pg_sleep(0.001);
              EXIT WHEN EXISTS (SELECT 1 FROM pg_class WHERE relname = 'stop_writer');
            END LOOP; END $$;
            """]
        try writer.run()
        let deadline = Date().addingTimeInterval(60)
        while Int(try ArchivingCluster.value(source, "SELECT count(*) FROM ledger"))! < 500 {
            guard writer.isRunning, Date() < deadline else { return XCTFail("the writer did not get going") }
            usleep(10_000)
        }
        let before = Int(try ArchivingCluster.value(source, "SELECT count(*) FROM ledger"))!
        try cluster.run("backup", "--source", "main")
        let after = Int(try ArchivingCluster.value(source, "SELECT count(*) FROM ledger"))!
        try source.sql("CREATE TABLE stop_writer ()")
        writer.waitUntilExit()
        XCTAssertEqual(writer.terminationStatus, 0)
        XCTAssertGreaterThan(after, before, "the writer committed while the backup ran")
        let written = Int(try ArchivingCluster.value(source, "SELECT max(id) FROM ledger"))!
        XCTAssertEqual(Int(try ArchivingCluster.value(source, "SELECT count(*) FROM ledger"))!, written)

        try ArchivingCluster.commitRows(source, (written + 1)...(written + 60))
        try cluster.archiveAll()

        let listing = try cluster.run("backups", "--source", "main", "--json")
        let backups = try JSONSerialization.jsonObject(with: Data(listing.utf8)) as! [[String: Any]]
        let artifacts = try XCTUnwrap(backups.first { $0["kind"] as? String == "full" }?["artifacts"] as? [String])
        XCTAssertTrue(artifacts.contains("data/backup_manifest"), "the server's backup_manifest is stored")
        XCTAssertTrue(artifacts.contains("data/backup_label"))
        XCTAssertTrue(artifacts.contains { $0.hasPrefix("data/pg_wal/0000000100") }, "the backup carries its WAL")
        XCTAssertTrue(artifacts.contains { $0.hasPrefix("data/pg_tblspc/") && $0.contains("/PG_15_") }, "tablespace files under pg_tblspc/OID/")

        let verify = try cluster.coffer(["verify", "--source", "main"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)

        // Between two commits 2 ms apart, after the backup: everything up to the first.
        let between = try ArchivingCluster.timeBetween(source, written + 30, written + 31)
        let want = try ArchivingCluster.rows(source, where: "pg_xact_commit_timestamp(xmin) <= '\(between)'")
        XCTAssertEqual(want.count, written + 30)
        let (pit, _) = try cluster.restore("pit", ["--to-time", between, "--timeline", "1",
                                                   "--set", "tablespace.remote_space=\(cluster.work)/ts-pit"])
        XCTAssertEqual(try ArchivingCluster.rows(pit), want, "restored rows differ from what was committed at \(between)")
        XCTAssertEqual(try ArchivingCluster.value(pit, "SELECT md5(string_agg(id || note, ',' ORDER BY id)) FROM moved"), moved)
        XCTAssertEqual(try ArchivingCluster.value(pit, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'remote_space'"),
                       cluster.work + "/ts-pit")
        try pit.stop()

        let (latest, _) = try cluster.restore("latest", ["--timeline", "1", "--set", "tablespace.remote_space=\(cluster.work)/ts-latest"])
        let all = try ArchivingCluster.rows(source)
        XCTAssertEqual(all.count, written + 60)
        XCTAssertEqual(try ArchivingCluster.rows(latest), all)
        XCTAssertEqual(try ArchivingCluster.value(latest, "SELECT md5(string_agg(id || note, ',' ORDER BY id)) FROM moved"), moved)
        try latest.stop()
    }

    /// Remote mode as it runs off the database host: over TCP with TLS required. The server's
    /// log shows the replication connection was encrypted; the restore holds every row.
    func testRemoteBackupOverTCPWithTLS() throws {
        let cluster = try ArchivingCluster(remote: true, tls: true)
        let source = cluster.server
        try source.sql("ALTER SYSTEM SET log_connections = on")
        try source.sql("SELECT pg_reload_conf()")
        try source.sql("CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL)")
        try ArchivingCluster.commitRows(source, 1...200)
        try cluster.run("backup", "--source", "main")
        try ArchivingCluster.commitRows(source, 201...260)
        try cluster.archiveAll()

        let log = source.log
        let tlsReplication = log.split(separator: "\n").filter {
            $0.contains("replication connection authorized") && $0.contains("SSL enabled")
        }
        XCTAssertFalse(tlsReplication.isEmpty, "no replication connection over TLS in the server log:\n\(log.suffix(2000))")

        // The restored postgresql.conf names the source's TCP port; the restored server is
        // reached on its socket as 5432, like every restored server in these tests.
        let (latest, _) = try cluster.restore("latest", ["--timeline", "1", "--set", "pg.port=5432"])
        let all = try ArchivingCluster.rows(source)
        XCTAssertEqual(all.count, 260)
        XCTAssertEqual(try ArchivingCluster.rows(latest), all)
        try latest.stop()
    }
}
