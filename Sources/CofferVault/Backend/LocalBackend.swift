import CofferIO
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A vault in a local directory. Writes go to `tmp/`, are fsynced, renamed into place, and
/// the directory is fsynced, so a crash leaves either the whole object or a stray temporary.
public struct LocalBackend: VaultBackend {
    public let root: String

    public init(path: String) {
        root = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
    }

    public var location: String { root }

    func path(_ kind: ObjectKind, _ name: String) -> String {
        switch kind {
        case .config: return "\(root)/config"
        case .packs: return "\(root)/packs/\(name.prefix(2))/\(name)"
        default: return "\(root)/\(kind.rawValue)/\(name)"
        }
    }

    public func read(_ kind: ObjectKind, _ name: String) throws -> [UInt8] {
        try withOpened(kind, name) { fd, size, p in
            let bytes = try readFully(fd: fd, offset: 0, length: size, path: p)
            guard bytes.count == size else { throw VaultError.corruptObject(kind: kind, name: name, reason: "short read") }
            return bytes
        }
    }

    public func read(_ kind: ObjectKind, _ name: String, offset: Int, length: Int) throws -> [UInt8] {
        try withOpened(kind, name, sized: false) { fd, _, p in
            let bytes = try readFully(fd: fd, offset: offset, length: length, path: p)
            guard bytes.count == length else { throw truncated(kind, name, offset: offset, length: length) }
            return bytes
        }
    }

    /// A pack's bytes mapped, not read: a restore then copies none of them out of the page
    /// cache (the copy was a tenth of its CPU). MAP_POPULATE has the calling thread (an I/O
    /// one) wait for the disk and fill the page tables, so that whoever opens the blobs takes
    /// no page fault. The file's size is checked first: touching a mapping past its end would
    /// kill the process, where a short read is an error.
    public func view(_ kind: ObjectKind, _ name: String, offset: Int, length: Int) throws -> ObjectBytes {
        try withOpened(kind, name) { fd, size, _ in
            guard offset >= 0, length >= 0, offset + length <= size else {
                throw truncated(kind, name, offset: offset, length: length)
            }
            guard length > 0 else { return ObjectBytes([]) }
            let start = offset / LocalBackend.pageSize * LocalBackend.pageSize
            let mappedLength = offset + length - start
            guard let base = mmap(nil, mappedLength, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, off_t(start)),
                  base != MAP_FAILED else {
                return ObjectBytes(try read(kind, name, offset: offset, length: length))
            }
            return ObjectBytes(mapped: base, mappedLength: mappedLength, skip: offset - start, length: length)
        }
    }

    /// The object opened for reading, with its size (when `sized`) and path, for `body`.
    private func withOpened<T>(_ kind: ObjectKind, _ name: String, sized: Bool = true,
                               _ body: (Int32, Int, String) throws -> T) throws -> T {
        let p = path(kind, name)
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw error(errno, kind, name, p) }
        defer { close(fd) }
        var st = stat()
        if sized { guard fstat(fd, &st) == 0 else { throw error(errno, kind, name, p) } }
        return try body(fd, Int(st.st_size), p)
    }

    private func truncated(_ kind: ObjectKind, _ name: String, offset: Int, length: Int) -> VaultError {
        .corruptObject(kind: kind, name: name, reason: "truncated: wanted \(length) bytes at offset \(offset), file ends first")
    }

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    public func size(_ kind: ObjectKind, _ name: String) throws -> Int {
        let p = path(kind, name)
        var st = stat()
        guard stat(p, &st) == 0 else { throw error(errno, kind, name, p) }
        return Int(st.st_size)
    }

    public func exists(_ kind: ObjectKind, _ name: String) throws -> Bool {
        access(path(kind, name), F_OK) == 0
    }

    public func list(_ kind: ObjectKind) throws -> [String] {
        let fm = FileManager.default
        switch kind {
        case .config:
            return fm.fileExists(atPath: path(.config, "")) ? ["config"] : []
        case .packs:
            let top = "\(root)/packs"
            guard let dirs = try? fm.contentsOfDirectory(atPath: top) else { return [] }
            var names: [String] = []
            for d in dirs.sorted() where d.count == 2 {
                names += ((try? fm.contentsOfDirectory(atPath: "\(top)/\(d)")) ?? []).filter { $0.count == 64 }
            }
            return names
        default:
            return ((try? fm.contentsOfDirectory(atPath: "\(root)/\(kind.rawValue)")) ?? []).sorted()
        }
    }

    public func write(_ kind: ObjectKind, _ name: String, _ bytes: [UInt8]) throws {
        let final = path(kind, name)
        let dir = (final as NSString).deletingLastPathComponent
        try makeDirectory(dir)
        let tmp = try durableTemporary(kind, name, bytes)
        guard rename(tmp, final) == 0 else {
            let e = errno
            unlink(tmp)
            throw error(e, kind, name, final)
        }
        try syncDirectory(dir)
    }

    /// As `write`, but the temporary is linked to the final name, which fails if the name
    /// exists: create-if-absent in one step (the prune lock, docs/decisions/009).
    public func createExclusive(_ kind: ObjectKind, _ name: String, _ bytes: [UInt8]) throws -> Bool {
        let final = path(kind, name)
        let dir = (final as NSString).deletingLastPathComponent
        try makeDirectory(dir)
        let tmp = try durableTemporary(kind, name, bytes)
        defer { unlink(tmp) }
        if link(tmp, final) != 0 {
            if errno == EEXIST { return false }
            throw error(errno, kind, name, final)
        }
        try syncDirectory(dir)
        return true
    }

    /// `bytes` in a new file under `tmp/`, written whole and fsynced; its path. Removed again
    /// if anything fails.
    /// Objects from this size on are written with O_DIRECT; smaller ones (manifests, index
    /// files, small packs) are not worth a synchronous device write each.
    static let directMinimum = 1 << 20

    private func durableTemporary(_ kind: ObjectKind, _ name: String, _ bytes: [UInt8]) throws -> String {
        let tmpDir = "\(root)/tmp"
        try makeDirectory(tmpDir)
        let tmp = "\(tmpDir)/\(kind.rawValue)-\(name.prefix(16))-\(Hex.encode(SecureRandom.bytes(8)))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        guard fd >= 0 else { throw error(errno, kind, name, tmp) }
        do {
            try bytes.withUnsafeBytes { b in
                if b.count >= Self.directMinimum {
                    // Packs: past the page cache (see DirectWriter), then fsync as for any object.
                    do {
                        try DirectWriter.write(fd: fd, b, describe: { tmp })
                    } catch let failed as DirectWriterError {
                        throw error(failed.errno, kind, name, tmp)
                    }
                    return
                }
                var done = 0
                while done < b.count {
                    let n = Glibc.write(fd, b.baseAddress! + done, b.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw error(errno, kind, name, tmp)
                    }
                    done += n
                }
            }
            guard fsync(fd) == 0 else { throw error(errno, kind, name, tmp) }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard close(fd) == 0 else {
            let e = errno
            unlink(tmp)
            throw error(e, kind, name, tmp)
        }
        return tmp
    }

    public func remove(_ kind: ObjectKind, _ name: String) throws {
        let p = path(kind, name)
        guard unlink(p) == 0 || errno == ENOENT else { throw error(errno, kind, name, p) }
        try syncDirectory((p as NSString).deletingLastPathComponent)
    }

    public func topLevelEntries() throws -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
    }

    public func staleTemporaries() throws -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(root)/tmp")) ?? []).sorted()
    }

    // MARK: - helpers

    /// Up to `length` bytes from `offset` (fewer at the end of the file), read into memory
    /// that is not zeroed first: a restore reads every pack through here.
    private func readFully(fd: Int32, offset: Int, length: Int, path p: String) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: length) { b, count in
            var done = 0
            while done < length {
                let n = pread(fd, b.baseAddress! + done, length - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw VaultError.io(path: p, message: String(cString: strerror(errno)))
                }
                if n == 0 { break }
                done += n
            }
            count = done
        }
    }

    private func makeDirectory(_ dir: String) throws {
        if mkdir(dir, 0o755) == 0 {
            try syncDirectory((dir as NSString).deletingLastPathComponent)
            return
        }
        let e = errno
        if e == EEXIST { return }
        if e == ENOENT {
            try makeDirectory((dir as NSString).deletingLastPathComponent)
            try makeDirectory(dir)
            return
        }
        throw e == ENOSPC ? VaultError.diskFull(path: root) : VaultError.io(path: dir, message: String(cString: strerror(e)))
    }

    private func syncDirectory(_ dir: String) throws {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw VaultError.io(path: dir, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw VaultError.io(path: dir, message: "fsync: \(String(cString: strerror(errno)))") }
    }

    private func error(_ e: Int32, _ kind: ObjectKind, _ name: String, _ p: String) -> VaultError {
        switch e {
        case ENOENT: return .missingObject(kind: kind, name: name)
        case ENOSPC, EDQUOT: return .diskFull(path: root)
        default: return .io(path: p, message: String(cString: strerror(e)))
        }
    }
}
