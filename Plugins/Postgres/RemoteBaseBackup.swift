import CLibPQ
import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// A full backup in remote mode: the plugin is not on the database host, so the server
/// sends the backup over a replication connection (`BASE_BACKUP`, one tar archive per
/// tablespace, the WAL of the backup inside the data directory's archive, and PostgreSQL's
/// own backup manifest). The archives are taken apart here and every file is stored as its
/// own artifact under the names local mode uses (data/<path>, data/pg_tblspc/<oid>/<path>),
/// with the same chunking, so restore, the chain, verify and dedupe treat both alike and a
/// later backup, in either mode, stores only the blocks that changed (decision 006).
struct RemoteBaseBackup {
    let conninfo: String
    let blockSize: Int

    func run(into sink: ArtifactSink) throws -> BackupDone {
        let connection = try Connection(conninfo, replication: true)
        let version = Int(PQserverVersion(connection.conn))
        guard version >= 150000 else {
            throw PostgresError("PostgreSQL \(version) is not supported in remote mode (15 or later: BASE_BACKUP's COPY stream)")
        }
        guard let segmentSize = UInt64(try connection.value("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")) else {
            throw PostgresError("cannot read wal_segment_size")
        }
        // Names for the tablespaces BASE_BACKUP lists by OID and location (a restore moves
        // one by name).
        var names: [String: String] = [:]
        for row in try connection.query("SELECT oid::text, spcname FROM pg_tablespace") {
            if let oid = row[0], let name = row[1] { names[oid] = name }
        }
        WALReservation.reserve(on: connection)
        let started = Date()
        // WAIT false: the backup carries its own WAL, so it need not wait for the archiver.
        let stream = try BaseBackupStream(connection: connection, command: """
            BASE_BACKUP (LABEL 'coffer', CHECKPOINT 'fast', WAL true, WAIT false, TABLESPACE_MAP true, \
            MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C')
            """)
        let start = stream.start
        let timeline = stream.timeline
        let locations = Dictionary(stream.tablespaces.map { ($0.oid, $0.location) }, uniquingKeysWith: { a, _ in a })
        var receiver = Receiver(sink: sink, blockSize: blockSize, start: start, timeline: timeline, segmentSize: segmentSize)

        var sawManifest = false
        while let part = try stream.nextPart() {
            switch part {
            case .archive(let name, let location):
                var prefix = ""
                if !location.isEmpty {
                    let oid = String(name.prefix { $0.isNumber })
                    guard !oid.isEmpty, locations[oid] == location else {
                        throw PostgresError("BASE_BACKUP sent archive \(name) for \(location), which is not in its tablespace list")
                    }
                    prefix = "pg_tblspc/" + oid
                    receiver.directories.append(prefix)
                }
                try receiver.archive(TarReader(source: stream), prefix: prefix)
            case .manifest:
                sawManifest = true
                var bytes: [UInt8] = []
                while let piece = try stream.read(max: 1 << 20) { bytes += piece }
                try receiver.check(manifest: bytes)
                try sink.artifact(name: "data/backup_manifest", chunker: "cdc") { try $0.write(bytes) }
            }
        }
        let (stop, _) = try stream.finish()
        // Every commit before the stop position happened before now (as in local mode).
        let consistentTime = PGTime.micros(Date())
        guard sawManifest else { throw PostgresError("BASE_BACKUP sent no backup manifest") }
        let wal = try receiver.finishWAL(stop: stop)

        let tablespaces = stream.tablespaces.map { "\($0.oid)\t\(names[$0.oid] ?? $0.oid)\t\($0.location)" }
        return BackupDone(
            positions: ["start_lsn": start.description, "stop_lsn": stop.description, "consistent_lsn": stop.description,
                        "timeline": String(timeline), "consistent_time": String(consistentTime)],
            metadata: ["server_version_num": String(version), "wal_segment_size": String(segmentSize),
                       "directories": receiver.directories.joined(separator: "\n"), "wal_segments": wal.joined(separator: "\n"),
                       "started": ISO8601DateFormatter().string(from: started), "mode": "remote",
                       "tablespaces": tablespaces.joined(separator: "\n")])
    }

    /// Turns the members of the archives into artifacts.
    struct Receiver {
        let sink: ArtifactSink
        let blockSize: Int
        let start: LSN
        let timeline: UInt32
        let segmentSize: UInt64
        var directories: [String] = []
        /// Size and CRC-32C of every file sent, checked against the server's manifest.
        var received: [String: (size: Int64, crc: UInt32)] = [:]
        /// The WAL segment most recently received: sent once the next one comes, or, the last,
        /// once the stop position is known, trimmed as local mode trims it.
        var held: (name: String, bytes: [UInt8])?
        var segments: [String] = []

        mutating func archive(_ tar: TarReader, prefix: String) throws {
            while let entry = try tar.next() {
                let path = prefix.isEmpty ? entry.path : prefix + "/" + entry.path
                switch entry.kind {
                case .directory:
                    directories.append(path)
                case .symlink:
                    // pg_tblspc links: a restore makes them from the tablespace list. The
                    // server sends none with TABLESPACE_MAP; any other link is refused below.
                    guard path.hasPrefix("pg_tblspc/") else {
                        throw PostgresError("BASE_BACKUP sent a symbolic link \(path) -> \(entry.linkTarget)")
                    }
                case .file where prefix.isEmpty && BaseBackup.isWALSegment(path):
                    try receiveSegment(tar, entry: entry)
                case .file:
                    try receiveFile(tar, entry: entry, path: path)
                case .other(let type):
                    throw PostgresError("BASE_BACKUP sent \(path) of tar type \(type), which Coffer does not store")
                }
            }
        }

        private mutating func receiveFile(_ tar: TarReader, entry: TarEntry, path: String) throws {
            let relation = path.hasPrefix("base/") || path.hasPrefix("global/") || path.hasPrefix("pg_tblspc/")
            let whole = path == "backup_label" || path == "tablespace_map" || path.hasPrefix("pg_wal/")
            var checksum = FileChecksum()
            try sink.artifact(name: "data/" + path, chunker: relation ? "fixed:\(blockSize)" : whole ? "whole" : "cdc") { out in
                try tar.readData { piece in
                    try piece.withUnsafeBytes {
                        checksum.update($0)
                        try out.write($0)
                    }
                }
            }
            received[path] = (checksum.size, checksum.value)
        }

        private mutating func receiveSegment(_ tar: TarReader, entry: TarEntry) throws {
            let name = String(entry.path.dropFirst("pg_wal/".count))
            guard entry.size == Int64(segmentSize) else {
                throw PostgresError("WAL segment \(name) in the backup is \(entry.size) bytes, not \(segmentSize)")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(segmentSize))
            try tar.readData { bytes += $0 }
            if let previous = held { try send(previous, keepTo: nil) }
            held = (name, bytes)
        }

        private mutating func send(_ segment: (name: String, bytes: [UInt8]), keepTo: LSN?) throws {
            var bytes = segment.bytes
            let first = start.segmentName(timeline: timeline, segmentSize: segmentSize)
            BaseBackup.trimSegment(&bytes, keepFrom: segment.name == first ? start : nil, keepTo: keepTo)
            try sink.artifact(name: "data/pg_wal/" + segment.name, chunker: "whole") { try $0.write(bytes) }
            segments.append(segment.name)
        }

        /// Sends the last segment and checks the backup's WAL runs from its start to its stop.
        mutating func finishWAL(stop: LSN) throws -> [String] {
            if let last = held { try send(last, keepTo: stop) }
            held = nil
            let first = start.segmentName(timeline: timeline, segmentSize: segmentSize)
            let last = stop.segmentName(timeline: timeline, segmentSize: segmentSize)
            guard segments.first == first, segments.last == last, segments == segments.sorted() else {
                throw PostgresError("BASE_BACKUP sent WAL segments \(segments.first ?? "none") to \(segments.last ?? "none"), expected \(first) to \(last)")
            }
            return segments
        }

        /// The server's manifest must list exactly the files received (WAL aside, which it
        /// leaves out), with the same sizes and CRC-32C: proof that the archives were taken
        /// apart right before the backup is recorded.
        func check(manifest bytes: [UInt8]) throws {
            guard let json = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
                  let files = json["Files"] as? [[String: Any]] else {
                throw PostgresError("the server's backup manifest is not readable JSON")
            }
            var listed = Set<String>()
            for file in files {
                guard let path = file["Path"] as? String, let size = (file["Size"] as? NSNumber)?.int64Value else {
                    throw PostgresError("the server's backup manifest has an entry without Path or Size")
                }
                listed.insert(path)
                guard let got = received[path] else { throw PostgresError("the server's backup manifest lists \(path), which the backup did not hold") }
                guard got.size == size else { throw PostgresError("\(path): received \(got.size) bytes, the server's manifest says \(size)") }
                if file["Checksum-Algorithm"] as? String == "CRC32C", let sum = file["Checksum"] as? String,
                   sum != BackupManifest.crcHex(got.crc) {
                    throw PostgresError("\(path): CRC-32C \(BackupManifest.crcHex(got.crc)) received, the server's manifest says \(sum)")
                }
            }
            if let extra = received.keys.first(where: { !listed.contains($0) && !$0.hasPrefix("pg_wal/") }) {
                throw PostgresError("the backup held \(extra), which the server's backup manifest does not list")
            }
        }
    }
}

extension BaseBackup {
    /// pg_wal/ followed by a 24-hex-digit segment name.
    static func isWALSegment(_ path: String) -> Bool {
        guard path.hasPrefix("pg_wal/") else { return false }
        let name = path.dropFirst(7)
        return name.count == 24 && name.allSatisfy(\.isHexDigit)
    }
}
