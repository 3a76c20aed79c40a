import Foundation

/// Writes the runs of a per-file physical backup (PhysicalLayout) into a directory on a
/// thread of its own, so that receiving the next bytes from the agent and writing these go
/// on at once. At most `capacity` bytes wait in memory.
final class FileRunWriter: @unchecked Sendable {
    private enum Step {
        case open(path: String, offset: UInt64)
        case data([UInt8])
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

    /// The next run: PATH (relative, checked) from OFFSET; a run from 0 starts the file anew.
    func open(path: String, offset: UInt64) throws { try queue.push(.open(path: path, offset: offset), size: 0) }
    func append(_ bytes: [UInt8]) throws { try queue.push(.data(bytes), size: bytes.count) }
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
        defer { if fd >= 0 { Glibc.close(fd) } }
        while let step = try queue.pop() {
            switch step {
            case .open(let relative, let offset):
                path = directory + "/" + relative
                try makeParent(of: relative)
                fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0), 0o640)
                guard fd >= 0 else { throw MySQLError("cannot create \(path): \(String(cString: strerror(errno)))") }
                at = offset
            case .data(let bytes):
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
                guard Glibc.close(fd) == 0 else { fd = -1; throw MySQLError("writing \(path): \(String(cString: strerror(errno)))") }
                fd = -1
            }
        }
    }

    private func makeParent(of relative: String) throws {
        guard let slash = relative.lastIndex(of: "/") else { return }
        let parent = String(relative[..<slash])
        guard !made.contains(parent) else { return }
        try FileManager.default.createDirectory(atPath: directory + "/" + parent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o750])
        made.insert(parent)
    }
}
