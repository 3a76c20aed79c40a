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
        let file = try MappedFile(path)
        // The mapping must outlive every use of `bytes`, the sending included.
        return try withExtendedLifetime(file) { try run(file.bytes, name: name, kind: kind, into: sink) }
    }

    private func run(_ bytes: UnsafeRawBufferPointer, name: String, kind: WALFileName, into sink: ArtifactSink) throws -> BackupDone {
        var positions = ["log": name]
        var metadata = ["wal_segment_size": String(segmentSize)]
        switch kind {
        case .segment(let timeline, let number):
            guard bytes.count == Int(segmentSize) else {
                throw PostgresError("\(name) is \(bytes.count) bytes, not a whole \(segmentSize)-byte segment")
            }
            positions["timeline"] = String(timeline)
            positions["start_lsn"] = LSN(number * segmentSize).description
            positions["end_lsn"] = LSN((number + 1) * segmentSize).description
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
        if case .segment = kind {
            // Checked once it is sent, while the agent hashes and compresses it: the agent
            // stores nothing until `done`, which only a valid segment gets (an error instead
            // leaves no manifest, as for any failed backup).
            let summary = try WALSegment.summarize(bytes, name: name, segmentSize: Int(segmentSize))
            // PostgreSQL archives only segments it has finished writing: a record that fails
            // its checksum there is damage, and storing it would hide a hole in the chain.
            if case .invalidRecord(let at, let reason) = summary.end {
                throw PostgresError("WAL segment \(name) is damaged: the record at \(at) is invalid (\(reason)); not archived")
            }
            metadata.merge(WALSummaryRecord(summary).metadata) { $1 }
        }
        return BackupDone(positions: positions, metadata: metadata)
    }
}

/// A file mapped read-only: the segment is checked and sent straight from the page cache.
/// Reading it into memory instead cost a copy and 16 MiB of fresh pages (~10 ms a segment).
/// PostgreSQL neither truncates nor rewrites a segment while its archive command runs; a
/// file cut under us anyway would kill the plugin (SIGBUS), which fails the push with
/// nothing stored.
final class MappedFile {
    let bytes: UnsafeRawBufferPointer

    init(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PostgresError("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PostgresError("cannot read \(path): \(String(cString: strerror(errno)))") }
        guard st.st_size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)  // mmap refuses an empty length
            return
        }
        // MAP_POPULATE: map every page in one call rather than fault them in one by one.
        let address = mmap(nil, Int(st.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw PostgresError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: address, count: Int(st.st_size))
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
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
