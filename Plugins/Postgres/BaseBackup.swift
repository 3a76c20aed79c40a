import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// A full backup in local mode: the plugin runs on the database host and reads the data
/// directory itself between pg_backup_start and pg_backup_stop (non-exclusive, on one
/// connection), then adds the WAL written meanwhile so the backup restores on its own.
struct BaseBackup {
    let connection: Connection
    let dataDirectory: String
    /// Relation files are cut into blocks of this size (a multiple of the 8 KiB page), so a
    /// later backup stores only the blocks that changed.
    let blockSize: Int

    /// Directories whose contents are never copied (PostgreSQL's own exclusion list for
    /// base backups); the directories themselves are recreated empty.
    static let skippedContents: Set<String> = ["pg_wal", "pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial",
                                               "pg_snapshots", "pg_stat_tmp", "pg_subtrans"]
    static let skippedFiles: Set<String> = ["postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map",
                                            "backup_label.old", "tablespace_map.old"]

    func run(into sink: ArtifactSink) throws -> BackupDone {
        let version = try connection.value("SHOW server_version_num")
        guard let v = Int(version), v >= 150000 else {
            throw PostgresError("PostgreSQL \(version) is not supported here (15 or later; pg_backup_start)")
        }
        let segmentSize = UInt64(try connection.value("SELECT setting::bigint * 1 FROM pg_settings WHERE name = 'wal_segment_size'"))!
        WALReservation.reserve(on: connection)
        let started = Date()
        guard let start = LSN(try connection.value("SELECT pg_backup_start($1, true)::text", ["coffer"])) else {
            throw PostgresError("pg_backup_start returned no LSN")
        }
        let timeline = UInt32(try connection.value("SELECT timeline_id FROM pg_control_checkpoint()"))!

        // Tablespaces (pg_tblspc/OID links to their locations) are read through the links and
        // stored under pg_tblspc/OID/; their names and locations let a restore put them back
        // where they were or where it is told.
        let tablespaces = try connection.query(
            "SELECT oid::text, spcname, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")
            .map { $0.map { $0 ?? "" }.joined(separator: "\t") }
        var directories: [String] = []
        var manifest = BackupManifest()
        try walk("", directories: &directories, manifest: &manifest, sink: sink)

        let stop = try connection.query("SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)")
        guard let row = stop.first, let stopText = row[0], let stopLSN = LSN(stopText), let label = row[1] else {
            throw PostgresError("pg_backup_stop returned nothing")
        }
        // Every commit before the stop LSN happened before now: the earliest time a
        // point-in-time restore from this backup can target.
        let consistentTime = PGTime.micros(Date())
        try sendContent("backup_label", Array(label.utf8), manifest: &manifest, sink: sink)
        if let map = row[2], !map.isEmpty {
            try sendContent("tablespace_map", Array(map.utf8), manifest: &manifest, sink: sink)
        }

        // The WAL from the start to the stop position makes the copy consistent; it is still
        // in pg_wal (the checkpoint that could recycle it has not happened yet).
        let first = start.segmentName(timeline: timeline, segmentSize: segmentSize)
        let last = stopLSN.segmentName(timeline: timeline, segmentSize: segmentSize)
        let wal = try FileManager.default.contentsOfDirectory(atPath: dataDirectory + "/pg_wal")
            .filter { $0.count == 24 && $0 >= first && $0 <= last }.sorted()
        guard wal.first == first, wal.last == last else {
            throw PostgresError("WAL segments \(first) to \(last) are not all in pg_wal any more")
        }
        for name in wal {
            try copySegment(name, keepFrom: name == first ? start : nil, keepTo: name == last ? stopLSN : nil,
                            segmentSize: segmentSize, sink: sink)
        }
        // PostgreSQL's own manifest of the same files, so pg_verifybackup can check a restore.
        let manifestText = manifest.text(timeline: timeline, start: start, stop: stopLSN)
        try sink.artifact(name: "data/backup_manifest", chunker: "cdc") { try $0.write(manifestText) }

        return BackupDone(
            positions: ["start_lsn": start.description, "stop_lsn": stopLSN.description, "consistent_lsn": stopLSN.description,
                        "timeline": String(timeline), "consistent_time": String(consistentTime)],
            metadata: ["server_version_num": version, "wal_segment_size": String(segmentSize),
                       "directories": directories.joined(separator: "\n"), "wal_segments": wal.joined(separator: "\n"),
                       "started": ISO8601DateFormatter().string(from: started), "mode": "local",
                       "tablespaces": tablespaces.joined(separator: "\n")])
    }

    /// Sends every file under `relative` (depth first, sorted, so repeated backups list the
    /// same order); records directories so empty ones are recreated.
    private func walk(_ relative: String, directories: inout [String], manifest: inout BackupManifest, sink: ArtifactSink) throws {
        let path = relative.isEmpty ? dataDirectory : dataDirectory + "/" + relative
        for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() {
            let child = relative.isEmpty ? name : relative + "/" + name
            var isDir: ObjCBool = false
            // A file dropped between listing and reading (a dropped table) is simply gone.
            guard FileManager.default.fileExists(atPath: dataDirectory + "/" + child, isDirectory: &isDir) else { continue }
            if isDir.boolValue {
                directories.append(child)
                if relative.isEmpty && BaseBackup.skippedContents.contains(name) { continue }
                try walk(child, directories: &directories, manifest: &manifest, sink: sink)
            } else {
                if relative.isEmpty && BaseBackup.skippedFiles.contains(name) { continue }
                if name.hasPrefix("pgsql_tmp") { continue }
                let relation = child.hasPrefix("base/") || child.hasPrefix("global/") || child.hasPrefix("pg_tblspc/")
                try copyFile(child, chunker: relation ? "fixed:\(blockSize)" : "cdc", manifest: &manifest, sink: sink)
            }
        }
    }

    /// Sends a WAL segment from pg_wal, trimmed (BaseBackup.trimSegment).
    private func copySegment(_ name: String, keepFrom: LSN?, keepTo: LSN?, segmentSize: UInt64, sink: ArtifactSink) throws {
        guard var bytes = FileManager.default.contents(atPath: dataDirectory + "/pg_wal/" + name).map(Array.init),
              bytes.count == Int(segmentSize)
        else { throw PostgresError("WAL segment \(name) is missing or not \(segmentSize) bytes") }
        BaseBackup.trimSegment(&bytes, keepFrom: keepFrom, keepTo: keepTo)
        try sink.artifact(name: "data/pg_wal/" + name, chunker: "whole") { try $0.write(bytes) }
    }

    /// Zeroes what recovery never reads of a backup's WAL segment: the pages between the
    /// segment's first page (read to check its header) and the backup's start, and the pages
    /// after its stop. Recycled segments hold old WAL there, which would not compress.
    static func trimSegment(_ bytes: inout [UInt8], keepFrom: LSN?, keepTo: LSN?) {
        let page = 8192
        let segmentSize = UInt64(bytes.count)
        if let keepFrom {
            let startPage = Int(keepFrom.value % segmentSize) / page * page
            if startPage > page { bytes.replaceSubrange(page..<startPage, with: repeatElement(0, count: startPage - page)) }
        }
        if let keepTo {
            let end = (Int(keepTo.value % segmentSize) + page - 1) / page * page
            if end > 0 && end < bytes.count { bytes.replaceSubrange(end..., with: repeatElement(0, count: bytes.count - end)) }
        }
    }

    /// Sends one file and adds it to the manifest with the size and CRC-32C of exactly the
    /// bytes sent (a file being written meanwhile is recorded as it was read; WAL replay
    /// repairs it, and the restored copy holds those same bytes).
    private func copyFile(_ relative: String, chunker: String, manifest: inout BackupManifest, sink: ArtifactSink) throws {
        let path = dataDirectory + "/" + relative
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { return }  // dropped since the listing
            throw PostgresError("cannot stat \(relative): \(String(cString: strerror(errno)))")
        }
        var checksum = FileChecksum()
        guard try sink.file(name: "data/" + relative, path: path, chunker: chunker, observe: { checksum.update($0) }) else { return }
        manifest.add(.init(path: relative, size: checksum.size, modified: Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec)),
                           crc: checksum.value))
    }

    /// A file made by the backup itself (backup_label, tablespace_map), dated now as the
    /// server dates them.
    private func sendContent(_ relative: String, _ bytes: [UInt8], manifest: inout BackupManifest, sink: ArtifactSink) throws {
        try sink.artifact(name: "data/" + relative, chunker: "whole") { try $0.write(bytes) }
        var checksum = FileChecksum()
        bytes.withUnsafeBytes { checksum.update($0) }
        manifest.add(.init(path: relative, size: checksum.size, modified: Date(), crc: checksum.value))
    }
}
