import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// restore_command (`coffer wal-fetch %f %p`): delivers one archived file to the path
/// recovery asked for, from the prefetch spool when it is already there, else from the
/// vault. A file the vault does not have is reported as missing (recovery asks for files
/// that may not exist, such as the next timeline's history, and takes "no" for an answer).
struct WALFetch {
    let log: String
    let path: String
    let spool: String?

    func run(from source: ArtifactSource) throws -> RestoreDone {
        if let spool, rename(spool + "/" + log, path) == 0 {
            return RestoreDone(positions: ["fetched": log, "from": "prefetch", "size": String(fileSize(path))])
        }
        let temporary = path + ".coffer-partial"
        guard let size = try fetchLog(log, to: temporary, from: source) else {
            return RestoreDone(positions: ["missing": log])
        }
        guard rename(temporary, path) == 0 else { throw PostgresError("cannot move \(log) to \(path): \(String(cString: strerror(errno)))") }
        return RestoreDone(positions: ["fetched": log, "from": "vault", "size": String(size)])
    }

    private func fileSize(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.int64Value ?? 0
    }
}

/// Fetches the segments after one recovery just took into the spool, so that the next
/// restore_command finds them there instead of waiting on the vault. One prefetcher per
/// spool at a time (a lock); it stops at the first segment the vault does not have.
struct WALPrefetch {
    let after: String
    let count: Int
    let spool: String
    let segmentSize: UInt64

    func run(from source: ArtifactSource) throws -> RestoreDone {
        guard case .segment(let timeline, let number)? = WALFileName(after, segmentSize: segmentSize) else {
            return RestoreDone(positions: ["prefetched": "0"])
        }
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let lock = open(spool + "/.lock", O_RDWR | O_CREAT, 0o600)
        guard lock >= 0 else { throw PostgresError("cannot open the spool lock in \(spool)") }
        defer { close(lock) }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else { return RestoreDone(positions: ["prefetched": "0", "busy": "1"]) }
        // What recovery has consumed is gone from the spool already; older leftovers (from a
        // different timeline's attempt) are dropped so the spool stays bounded.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: spool)) ?? [] {
            if case .segment(_, let n)? = WALFileName(name, segmentSize: segmentSize), n <= number {
                unlink(spool + "/" + name)
            }
        }
        var fetched = 0
        for n in (number + 1)...(number + UInt64(max(1, count))) {
            let name = WALFileName.segment(timeline: timeline, number: n, segmentSize: segmentSize)
            if FileManager.default.fileExists(atPath: spool + "/" + name) { continue }
            guard try fetchLog(name, to: spool + "/" + name + ".coffer-partial", from: source) != nil else { break }
            guard rename(spool + "/" + name + ".coffer-partial", spool + "/" + name) == 0 else {
                throw PostgresError("cannot move \(name) into the spool \(spool)")
            }
            fetched += 1
        }
        return RestoreDone(positions: ["prefetched": String(fetched)])
    }
}

/// Writes log `log` from the vault to `path`; nil (and nothing left behind) when the vault
/// does not have it.
func fetchLog(_ log: String, to path: String, from source: ArtifactSource) throws -> Int64? {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw PostgresError("cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let size = try source.fetchLog(log) { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw PostgresError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
    if size == nil { unlink(path) }
    return size
}
