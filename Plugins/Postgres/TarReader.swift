import Foundation

/// Where a tar archive's bytes come from, a piece at a time; nil once the archive's bytes end.
protocol ByteSource: AnyObject {
    func read(max: Int) throws -> ArraySlice<UInt8>?
}

/// One member of a tar archive.
struct TarEntry {
    enum Kind { case file, directory, symlink, other(UInt8) }
    /// Relative path, without the trailing slash PostgreSQL gives directories.
    let path: String
    let kind: Kind
    let size: Int64
    let modified: Date
    let linkTarget: String
}

/// Reads the ustar archives that `BASE_BACKUP` streams (src/port/tar.c writes them: 512-byte
/// headers, octal or base-256 numbers, data padded to 512 bytes, two zero blocks at the end),
/// one member at a time, without holding more than a piece of a member in memory.
final class TarReader {
    static let block = 512
    private let source: ByteSource
    /// Bytes of the current member (data, then padding) not read yet.
    private var unreadData: Int64 = 0
    private var unreadPadding = 0
    private var finished = false
    private var pending: ArraySlice<UInt8> = []

    init(source: ByteSource) { self.source = source }

    /// The next member, after skipping whatever of the current one was not read; nil at the
    /// end of the archive (its zero blocks, or its bytes simply ending between members).
    func next() throws -> TarEntry? {
        if finished { return nil }
        try skip(unreadData + Int64(unreadPadding))
        unreadData = 0
        unreadPadding = 0
        guard let header = try readExactly(TarReader.block) else {
            finished = true
            return nil
        }
        if header.allSatisfy({ $0 == 0 }) {
            // The end-of-archive marker; whatever follows in this archive is padding.
            while try take(1 << 20) != nil {}
            finished = true
            return nil
        }
        let entry = try TarReader.parse(header)
        if case .file = entry.kind {
            unreadData = entry.size
            unreadPadding = Int((TarReader.block - Int(entry.size % Int64(TarReader.block))) % TarReader.block)
        }
        return entry
    }

    /// The current member's data, piece by piece, then its padding is skipped.
    func readData(_ handle: (ArraySlice<UInt8>) throws -> Void) throws {
        while unreadData > 0 {
            guard let piece = try take(Int(min(unreadData, 1 << 20))) else {
                throw PostgresError("the backup stream ended inside a file (\(unreadData) bytes missing)")
            }
            unreadData -= Int64(piece.count)
            try handle(piece)
        }
        try skip(Int64(unreadPadding))
        unreadPadding = 0
    }

    private func take(_ max: Int) throws -> ArraySlice<UInt8>? {
        if pending.isEmpty {
            guard let next = try source.read(max: max) else { return nil }
            pending = next
        }
        let n = Swift.min(max, pending.count)
        defer { pending = pending.dropFirst(n) }
        return pending.prefix(n)
    }

    private func skip(_ count: Int64) throws {
        var left = count
        while left > 0 {
            guard let piece = try take(Int(min(left, 1 << 20))) else { throw PostgresError("the backup stream ended inside a tar member") }
            left -= Int64(piece.count)
        }
    }

    /// Exactly `count` bytes, or nil when the archive ends before the first of them.
    private func readExactly(_ count: Int) throws -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            guard let piece = try take(count - out.count) else {
                if out.isEmpty { return nil }
                throw PostgresError("the backup stream ended inside a tar header")
            }
            out += piece
        }
        return out
    }

    static func parse(_ h: [UInt8]) throws -> TarEntry {
        // The checksum: the header's bytes summed with its own field taken as spaces.
        let sum = h.enumerated().reduce(0) { $0 + Int((148..<156).contains($1.offset) ? 32 : $1.element) }
        guard let recorded = number(h[148..<156]), recorded == sum else {
            throw PostgresError("a tar header in the backup stream has a bad checksum (the stream is out of step)")
        }
        var path = text(h[0..<100])
        let prefix = text(h[345..<500])
        if text(h[257..<262]) == "ustar", !prefix.isEmpty { path = prefix + "/" + path }
        while path.hasSuffix("/") { path.removeLast() }
        if path.hasPrefix("./") { path.removeFirst(2) }
        guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
            throw PostgresError("the backup stream names a file outside the data directory: '\(path)'")
        }
        guard let size = number(h[124..<136]), let mtime = number(h[136..<148]) else {
            throw PostgresError("tar header of \(path) has an unreadable size or time")
        }
        let kind: TarEntry.Kind
        switch h[156] {
        case UInt8(ascii: "0"), 0: kind = .file
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "2"): kind = .symlink
        case let other: kind = .other(other)
        }
        return TarEntry(path: path, kind: kind, size: Int64(size), modified: Date(timeIntervalSince1970: TimeInterval(mtime)),
                        linkTarget: text(h[157..<257]))
    }

    /// A NUL-terminated field.
    private static func text(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// An octal field (spaces and NULs around it), or base-256 when its first byte has the
    /// high bit set (sizes of 8 GiB and more).
    private static func number(_ field: ArraySlice<UInt8>) -> Int? {
        guard let first = field.first else { return nil }
        if first & 0x80 != 0 {
            return field.dropFirst().reduce(Int(first & 0x7f)) { ($0 << 8) | Int($1) }
        }
        let digits = String(decoding: field.filter { $0 != 0 && $0 != 32 }, as: UTF8.self)
        return digits.isEmpty ? 0 : Int(digits, radix: 8)
    }
}
