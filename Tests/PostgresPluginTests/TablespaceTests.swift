import CofferFixtures
import Foundation
import XCTest

/// Tablespaces are backed up through their pg_tblspc links and restored to their place or
/// where the restore is told, with the link and tablespace_map pointing there.
final class TablespaceTests: XCTestCase {
    func testTablespaceRestoresToANewLocation() throws {
        let cluster = try ArchivingCluster()
        let original = try cluster.server.ownedDirectory("ts-original")
        try cluster.server.sql("CREATE TABLESPACE archive_space LOCATION '\(original)'")
        try cluster.server.sql("""
            CREATE TABLE moved (id int PRIMARY KEY, note text NOT NULL) TABLESPACE archive_space;
            INSERT INTO moved SELECT g, md5(g::text) FROM generate_series(1, 50000) g;
            CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL);
            """)
        let want = try ArchivingCluster.value(cluster.server, "SELECT count(*) || ' ' || md5(string_agg(id || note, ',' ORDER BY id)) FROM moved")
        try cluster.run("backup", "--source", "main")
        try cluster.archiveAll()

        let moved = cluster.work + "/ts-restored"
        let (restored, _) = try cluster.restore("ts", ["--set", "tablespace.archive_space=\(moved)"])
        XCTAssertEqual(try ArchivingCluster.value(restored, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'archive_space'"), moved)
        XCTAssertEqual(try ArchivingCluster.value(restored, "SELECT count(*) || ' ' || md5(string_agg(id || note, ',' ORDER BY id)) FROM moved"), want)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: moved).isEmpty)
        try restored.stop()

        // The original location is still in use by the source: a restore to it is refused.
        let refused = try cluster.coffer(["restore", "--source", "main", "--target-dir", cluster.work + "/in-place"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("is not empty"), refused.stderr)
    }
}
