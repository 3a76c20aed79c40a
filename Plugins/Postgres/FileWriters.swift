import CofferPluginProtocol
import Foundation

/// Writes restored files on a few threads while the caller receives the next ones from the
/// agent. Creating and filling thousands of files is most of a restore's work on the plugin's
/// side; done on the receiving thread, it also leaves the pipe unread meanwhile. Each file is
/// taken whole, in arrival order, by whichever thread is free, and written in order. At most
/// `maxQueued` bytes wait to be written, so memory stays bounded however large the restore.
///
/// For a restore into an empty directory, other threads create the files ahead of their data,
/// a directory each at a time (the kernel creates one file at a time in a directory). Creating
/// a small file can cost more than writing it: ext4 without a journal skips every inode freed
/// in the last minute when it looks for a free one, which after a large delete (the previous
/// restore's) measured half a millisecond a file. The writer finds the files there, or
/// creates one itself when it gets ahead.
///
/// The first failure stops every thread, removes the files being written (FileRestorer.abandon)
/// and is thrown to the receiver by its next call; `abort` also removes the files created
/// ahead whose data never came.
final class FileWriters: @unchecked Sendable {   // all state is under `condition`
    /// A file being received: its pieces wait here until its thread takes them.
    final class File {
        fileprivate var restorer: FileRestorer
        /// Held as they came (slots of the agent's shared memory), each let go once written.
        fileprivate var pieces: [DataPiece] = []
        fileprivate var ended = false

        fileprivate init(_ restorer: FileRestorer) { self.restorer = restorer }
    }

    /// Why a thread put its file down when another failed; not itself reported.
    private struct Stopped: Error {}

    private let condition = NSCondition()
    private var waiting: [File] = []
    private var head = 0
    private var queued = 0
    private let maxQueued: Int
    private var failure: Error?
    private var aborted = false
    private var closed = false
    private var running: Int
    /// Files to create ahead, by directory, the next directory to take, what was created and
    /// which of those were written whole.
    private let directories: [[String]]
    private var nextDirectory = 0
    private var created: [String] = []
    private var written: Set<String> = []

    /// - Parameters:
    ///   - threads: writer threads;
    ///   - creating: paths of files to create ahead (none for a delta restore, whose files
    ///     mostly exist), by `creators` threads.
    init(threads: Int, creating paths: [String] = [], creators: Int = 0, maxQueued: Int = 16 << 20) {
        self.maxQueued = maxQueued
        var order: [String: Int] = [:]
        var directories: [[String]] = []
        for path in paths {
            let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if let i = order[parent] {
                directories[i].append(path)
            } else {
                order[parent] = directories.count
                directories.append([path])
            }
        }
        self.directories = directories
        let creators = directories.isEmpty ? 0 : max(0, creators)
        running = max(1, threads) + creators
        for _ in 0..<max(1, threads) {
            let thread = Thread { self.work() }
            thread.name = "restore-writer"
            thread.start()
        }
        for _ in 0..<creators {
            let thread = Thread { self.create() }
            thread.name = "restore-creator"
            thread.start()
        }
    }

    /// A new file; its bytes follow with `append`, its end with `end`.
    func begin(_ restorer: FileRestorer) throws -> File {
        try locked {
            if let failure { throw failure }
            let file = File(restorer)
            waiting.append(file)
            condition.broadcast()
            return file
        }
    }

    /// The file's next bytes; waits while too much is queued.
    func append(_ piece: DataPiece, to file: File) throws {
        try locked {
            while failure == nil, queued > 0, queued + piece.count > maxQueued { condition.wait() }
            if let failure { throw failure }
            file.pieces.append(piece)
            queued += piece.count
            condition.broadcast()
        }
    }

    /// All the file's bytes have come (and their count was checked against the agent's).
    func end(_ file: File) throws {
        try locked {
            if let failure { throw failure }
            file.ended = true
            condition.broadcast()
        }
    }

    /// Waits until every file is written; throws the first failure.
    func finish() throws {
        try locked {
            closed = true
            condition.broadcast()
            while running > 0 { condition.wait() }
            if let failure { throw failure }
        }
    }

    /// The receiving side failed (or `finish` did): the files being written are removed, so
    /// are those created ahead but never written, and the threads end.
    func abort() {
        let unwritten: [String] = locked {
            aborted = true
            closed = true
            condition.broadcast()
            while running > 0 { condition.wait() }
            defer { created = [] }
            return created.filter { !written.contains($0) }
        }
        for path in unwritten { unlink(path) }
    }

    private func create() {
        while let paths = takeDirectory() {
            for path in paths {
                // O_EXCL: a file the writer got to first is its own, not ours to remove.
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                if fd >= 0 { close(fd) }
                let go = locked {
                    if fd >= 0 { created.append(path) }
                    return failure == nil && !aborted && !closed
                }
                if !go { break }
            }
        }
        locked {
            running -= 1
            condition.broadcast()
        }
    }

    private func takeDirectory() -> [String]? {
        locked {
            guard failure == nil, !aborted, !closed, nextDirectory < directories.count else { return nil }
            nextDirectory += 1
            return directories[nextDirectory - 1]
        }
    }

    private func work() {
        while let file = next() {
            do {
                while let pieces = try take(file) {
                    for piece in pieces { try piece.withUnsafeBytes { try file.restorer.write($0) } }
                    locked {
                        queued -= pieces.reduce(0) { $0 + $1.count }
                        condition.broadcast()
                    }
                }
                try file.restorer.finish()
                if !directories.isEmpty { locked { _ = written.insert(file.restorer.path) } }
            } catch {
                file.restorer.abandon()
                locked {
                    if !(error is Stopped), failure == nil { failure = error }
                    condition.broadcast()
                }
            }
        }
        locked {
            running -= 1
            condition.broadcast()
        }
    }

    /// The next file to write, nil when there will be none.
    private func next() -> File? {
        locked {
            while head == waiting.count, !closed, failure == nil { condition.wait() }
            guard failure == nil, !aborted, head < waiting.count else { return nil }
            let file = waiting[head]
            head += 1
            if head >= 1024, head * 2 >= waiting.count {
                waiting.removeFirst(head)
                head = 0
            }
            return file
        }
    }

    /// The file's pieces that came since the last call; nil once it ended and all are taken.
    private func take(_ file: File) throws -> [DataPiece]? {
        try locked {
            while file.pieces.isEmpty, !file.ended, failure == nil, !aborted, !closed { condition.wait() }
            if failure != nil || aborted { throw Stopped() }
            if !file.pieces.isEmpty {
                defer { file.pieces = [] }
                return file.pieces
            }
            if file.ended { return nil }
            throw PostgresError("\(file.restorer.path): the restore ended before all of it came")
        }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }
}
