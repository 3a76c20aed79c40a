import CMariaDB

/// The INSERT line being built for a dump, in raw memory: appending value by value to a
/// Swift array (a capacity check per byte, an array per NULL) was most of the dump's CPU.
struct DumpLine: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    /// zlib's CRC-32 of the bytes from `start` to the end.
    func checksum(from start: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: crc32(0, base + start, UInt32(count - start)))
    }

    mutating func reset(to prefix: [UInt8]) {
        count = 0
        append(prefix)
    }

    /// Room for `n` more bytes.
    @inline(__always)
    mutating func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        let grown = max(capacity * 2, count + n)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
        bigger.update(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity = grown
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append(raw: $0) }
    }

    mutating func append(raw bytes: UnsafeRawBufferPointer) {
        reserve(bytes.count)
        if let from = bytes.baseAddress { (base + count).update(from: from.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
        count += bytes.count
    }

    /// X'…' with the bytes in hex.
    mutating func appendHex(_ bytes: UnsafeRawBufferPointer) {
        reserve(bytes.count * 2 + 3)
        var out = base + count
        out[0] = UInt8(ascii: "X")
        out[1] = UInt8(ascii: "'")
        out += 2
        DumpLine.hexPairs.withUnsafeBufferPointer { pairs in
            for b in bytes {
                UnsafeMutableRawPointer(out).storeBytes(of: pairs[Int(b)].littleEndian, as: UInt16.self)
                out += 2
            }
        }
        out[0] = UInt8(ascii: "'")
        count = out + 1 - base
    }

    /// '…' with the bytes escaped as MariaDB's and MySQL's lexers read them without
    /// NO_BACKSLASH_ESCAPES (the restore clears it): NUL, line ends, ^Z, quotes, backslash.
    /// Byte by byte is exact for rows read in the binary charset (DumpSchema.rowCharset), which
    /// a restore reads back in the binary charset too, and for older dumps' utf8mb4: no
    /// multibyte utf8mb4 character holds an ASCII byte. `binary` prefixes `_binary`, so that
    /// the server takes the bytes as they are whatever the connection's charset.
    mutating func appendQuoted(_ bytes: UnsafeRawBufferPointer, binary: Bool) {
        reserve(bytes.count * 2 + 10)
        var out = base + count
        if binary {
            for c in "_binary".utf8 {
                out.pointee = c
                out += 1
            }
        }
        out.pointee = UInt8(ascii: "'")
        out += 1
        DumpLine.escapes.withUnsafeBufferPointer { escapes in
            for b in bytes {
                let e = escapes[Int(b)]
                if e == 0 {
                    out.pointee = b
                    out += 1
                } else {
                    out[0] = UInt8(ascii: "\\")
                    out[1] = e
                    out += 2
                }
            }
        }
        out.pointee = UInt8(ascii: "'")
        count = out + 1 - base
    }

    /// For each byte, the letter after the backslash that stands for it, or 0: as is.
    private static let escapes: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 256)
        t[0] = UInt8(ascii: "0")
        t[10] = UInt8(ascii: "n")
        t[13] = UInt8(ascii: "r")
        t[26] = UInt8(ascii: "Z")
        t[Int(UInt8(ascii: "\\"))] = UInt8(ascii: "\\")
        t[Int(UInt8(ascii: "'"))] = UInt8(ascii: "'")
        t[Int(UInt8(ascii: "\""))] = UInt8(ascii: "\"")
        return t
    }()

    /// Each byte's two hex digits, as they lie in memory.
    private static let hexPairs: [UInt16] = (0..<256).map { b in
        let digits = Array("0123456789ABCDEF".utf8)
        return UInt16(digits[b >> 4]) | UInt16(digits[b & 15]) << 8
    }
}
