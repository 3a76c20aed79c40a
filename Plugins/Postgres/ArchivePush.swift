import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// One file from archive_command (`coffer wal-push %p`) as a log backup: a WAL segment
/// (checked page by page and record by record before it is accepted, and summarized so
/// the chain knows its commits and restore points), a timeline history file, a partial
/// segment or a backup history file. The agent stores it once under its name.
struct ArchivePush {
    let path: String
    let segmentSize: UInt64

    func run(into sink: ArtifactSink) throws -> BackupDone {
        let name = (path as NSString).lastPathComponent
        guard let kind = WALFileName(name, segmentSize: segmentSize) else {
            throw PostgresError("\(name) is not a WAL segment, history, partial or backup history file name")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw PostgresError("cannot read \(path)") }
        let bytes = [UInt8](data)
        var positions = ["log": name]
        var metadata = ["wal_segment_size": String(segmentSize)]
        switch kind {
        case .segment(let timeline, let number):
            guard bytes.count == Int(segmentSize) else {
                throw PostgresError("\(name) is \(bytes.count) bytes, not a whole \(segmentSize)-byte segment")
            }
            let summary = try bytes.withUnsafeBytes { try WALSegment.summarize($0, name: name, segmentSize: Int(segmentSize)) }
            // PostgreSQL archives only segments it has finished writing: a record that fails
            // its checksum there is damage, and storing it would hide a hole in the chain.
            if case .invalidRecord(let at, let reason) = summary.end {
                throw PostgresError("WAL segment \(name) is damaged: the record at \(at) is invalid (\(reason)); not archived")
            }
            positions["timeline"] = String(timeline)
            positions["start_lsn"] = LSN(number * segmentSize).description
            positions["end_lsn"] = LSN((number + 1) * segmentSize).description
            metadata.merge(WALSummaryRecord(summary).metadata) { $1 }
            metadata["type"] = "segment"
        case .history(let timeline):
            positions["timeline"] = String(timeline)
            guard let text = String(bytes: bytes, encoding: .utf8) else { throw PostgresError("\(name) is not text") }
            metadata["history"] = text
            metadata["type"] = "history"
        case .partial(let timeline, _):
            positions["timeline"] = String(timeline)
            metadata["type"] = "partial"
        case .backupHistory:
            metadata["type"] = "backup_history"
        }
        // Up to 16 MiB a segment is one blob; larger segment sizes are cut in 16 MiB pieces.
        let chunker = bytes.count <= 16 << 20 ? "whole" : "fixed:\(16 << 20)"
        try sink.artifact(name: "wal/" + name, chunker: chunker) { try $0.write(bytes) }
        return BackupDone(positions: positions, metadata: metadata)
    }
}

/// A segment's summary as kept in its manifest's metadata (strings; times in µs since the
/// Unix epoch), and read back by the chain.
struct WALSummaryRecord: Equatable {
    struct RestorePoint: Equatable {
        let name: String
        let lsn: LSN
        let time: Int64
    }

    var recordsEnd: LSN?
    var commits = 0
    var firstCommit: Int64?
    var lastCommit: Int64?
    var minXid: UInt32?
    var maxXid: UInt32?
    var restorePoints: [RestorePoint] = []

    init(_ summary: WALSummary) {
        recordsEnd = summary.endOfRecords
        commits = summary.commits
        firstCommit = summary.firstCommit.map(PGTime.micros)
        lastCommit = summary.lastCommit.map(PGTime.micros)
        minXid = summary.minXid
        maxXid = summary.maxXid
        restorePoints = summary.restorePoints.map { RestorePoint(name: $0.name, lsn: $0.lsn, time: PGTime.micros($0.time)) }
    }

    init(metadata m: [String: String]) {
        recordsEnd = m["records_end"].flatMap { LSN($0) }
        commits = m["commits"].flatMap { Int($0) } ?? 0
        firstCommit = m["first_commit"].flatMap { Int64($0) }
        lastCommit = m["last_commit"].flatMap { Int64($0) }
        minXid = m["min_xid"].flatMap { UInt32($0) }
        maxXid = m["max_xid"].flatMap { UInt32($0) }
        restorePoints = (m["restore_points"] ?? "").split(separator: "\n").compactMap { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 3, let lsn = LSN(String(f[1])), let t = Int64(f[2]) else { return nil }
            return RestorePoint(name: String(f[0]), lsn: lsn, time: t)
        }
    }

    var metadata: [String: String] {
        var m = ["commits": String(commits)]
        m["records_end"] = recordsEnd?.description
        m["first_commit"] = firstCommit.map { String($0) }
        m["last_commit"] = lastCommit.map { String($0) }
        m["min_xid"] = minXid.map { String($0) }
        m["max_xid"] = maxXid.map { String($0) }
        if !restorePoints.isEmpty {
            m["restore_points"] = restorePoints.map { "\($0.name)\t\($0.lsn)\t\($0.time)" }.joined(separator: "\n")
        }
        return m
    }
}
