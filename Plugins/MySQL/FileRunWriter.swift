import CofferIO
import CofferPluginProtocol
import Foundation

/// Writes the runs of a per-file physical backup (PhysicalLayout) into a directory on a
/// thread of its own, so that receiving the next bytes from the agent and writing these go
/// on at once. At most `capacity` bytes wait in memory. Runs of 1 MiB and more skip the page
/// cache (CofferIO.DirectWriter, decision 016); the caller syncs the file system at the end.
final class FileRunWriter: @unchecked Sendable {
    private enum Step {
        case open(path: String, offset: UInt64, size: Int64)
        case data(DataPiece)
        case close
    }

    private let directory: String
    private let queue: BoundedQueue<Step>
    private let done = DispatchSemaphore(value: 0)
    private var failure: Error?
    private var made: Set<String> = []

    init(directory: String, capacity: Int = 32 << 20) {
        self.directory = directory
        queue = BoundedQueue(capacity: capacity)
        let thread = Thread { [self] in
            do {
                try work()
            } catch {
                failure = error
                queue.fail(error)
            }
            done.signal()
        }
        thread.name = "restore-writer"
        thread.start()
    }

    /// The next run: PATH (relative, checked) from OFFSET, SIZE bytes; a run from 0 starts the
    /// file anew.
    func open(path: String, offset: UInt64, size: Int64) throws {
        try queue.push(.open(path: path, offset: offset, size: size), size: 0)
    }
    /// The run's next bytes, written from where they came (a slot of shared memory).
    func append(_ piece: DataPiece) throws { try queue.push(.data(piece), size: piece.count) }
    func close() throws { try queue.push(.close, size: 0) }

    /// Waits for everything queued to be written; throws the writer's failure.
    func finish() throws {
        queue.close()
        done.wait()
        if let failure { throw failure }
    }

    /// Stops the writer (the receiving side failed).
    func abort(_ error: Error) {
        queue.fail(error)
        done.wait()
    }

    private func work() throws {
        var fd: Int32 = -1
        var path = ""
        var at: UInt64 = 0
        var direct: DirectWriter?
        defer {
            direct = nil
            if fd >= 0 { Glibc.close(fd) }
        }
        while let step = try queue.pop() {
            switch step {
            case .open(let relative, let offset, let size):
                path = directory + "/" + relative
                try makeParent(of: relative)
                fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0), 0o640)
                guard fd >= 0 else { throw MySQLError("cannot create \(path): \(String(cString: strerror(errno)))") }
                at = offset
                if size >= FileRunWriter.directMinimum {
                    direct = DirectWriter(fd: fd, offset: Int64(offset), describe: { [path] in path })
                }
            case .data(let bytes):
                if let direct {
                    do { try bytes.withUnsafeBytes { try direct.write($0) } } catch let e as DirectWriterError { throw MySQLError(e.description) }
                    at += UInt64(bytes.count)
                    continue
                }
                try bytes.withUnsafeBytes { raw in
                    var done = 0
                    while done < raw.count {
                        let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(at) + off_t(done))
                        if n < 0 {
                            if errno == EINTR { continue }
                            throw MySQLError("writing \(path): \(String(cString: strerror(errno)))")
                        }
                        done += n
                    }
                }
                at += UInt64(bytes.count)
            case .close:
                if let writer = direct {
                    direct = nil
                    do { try writer.finish() } catch let e as DirectWriterError { throw MySQLError(e.description) }
                }
                guard Glibc.close(fd) == 0 else { fd = -1; throw MySQLError("writing \(path): \(String(cString: strerror(errno)))") }
                fd = -1
            }
        }
    }

    /// Runs from this size on are written with O_DIRECT.
    static let directMinimum: Int64 = 1 << 20

    private func makeParent(of relative: String) throws {
        guard let slash = relative.lastIndex(of: "/") else { return }
        let parent = String(relative[..<slash])
        guard !made.contains(parent) else { return }
        try FileManager.default.createDirectory(atPath: directory + "/" + parent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o750])
        made.insert(parent)
    }
}
