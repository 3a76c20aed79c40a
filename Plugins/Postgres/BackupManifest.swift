import Foundation

/// PostgreSQL's own backup manifest (`backup_manifest`, version 1), as `BASE_BACKUP` writes it
/// (src/backend/backup/backup_manifest.c), so that `pg_verifybackup` checks a restored data
/// directory of a local-mode backup exactly as it checks one `pg_basebackup` wrote. Remote mode
/// stores the server's own manifest instead.
///
/// The layout is byte for byte the server's: the checksum of the manifest (SHA-256) covers
/// every byte up to the newline before the `Manifest-Checksum` line, and each file's checksum
/// is the CRC-32C of its bytes written as the server does, the four bytes of the integer in
/// memory (little-endian) in lowercase hex.
struct BackupManifest {
    struct File {
        let path: String
        let size: Int64
        let modified: Date
        let crc: UInt32
    }

    private(set) var files: [File] = []

    mutating func add(_ file: File) { files.append(file) }

    /// The manifest's text for a backup whose WAL runs from `start` to `stop` on `timeline`.
    func text(timeline: UInt32, start: LSN, stop: LSN) -> [UInt8] {
        var body = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": ["
        for (i, f) in files.enumerated() {
            body += i == 0 ? "\n" : ",\n"
            body += "{ \"Path\": \(BackupManifest.jsonString(f.path)), \"Size\": \(f.size), "
            body += "\"Last-Modified\": \"\(BackupManifest.gmt(f.modified))\", "
            body += "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"\(BackupManifest.crcHex(f.crc))\" }"
        }
        body += "\n],\n\"WAL-Ranges\": [\n"
        body += "{ \"Timeline\": \(timeline), \"Start-LSN\": \"\(start)\", \"End-LSN\": \"\(stop)\" }"
        body += "\n],\n"
        var bytes = Array(body.utf8)
        let digest = SHA256.hash(bytes).map { String($0, radix: 16).leftPadded(2) }.joined()
        bytes += Array("\"Manifest-Checksum\": \"\(digest)\"}\n".utf8)
        return bytes
    }

    /// The CRC's four bytes as they lie in memory on the server (pg_checksum_final copies the
    /// uint32), in hex.
    static func crcHex(_ crc: UInt32) -> String {
        (0..<4).map { String((crc >> (8 * UInt32($0))) & 0xff, radix: 16).leftPadded(2) }.joined()
    }

    /// "%Y-%m-%d %H:%M:%S GMT", the server's Last-Modified.
    static func gmt(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { String(v).leftPadded(2) }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }

    /// A JSON string as the server's escape_json writes it.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += "\\u" + String(u.value, radix: 16).leftPadded(4) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

/// Size and CRC-32C of a file's bytes as they are read and sent.
struct FileChecksum {
    private var crc: UInt32 = 0xFFFF_FFFF
    private(set) var size: Int64 = 0

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        crc = CRC32C.tables.withUnsafeBufferPointer { CRC32C.update(crc, base, count: bytes.count, tables: $0) }
        size += Int64(bytes.count)
    }

    var value: UInt32 { crc ^ 0xFFFF_FFFF }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// SHA-256 (FIPS 180-4), for the manifest's own checksum: the plugin links no crypto
/// library, and a manifest is a few hundred KiB at most.
enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var data = message
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        let bits = UInt64(message.count) * 8
        for i in (0..<8).reversed() { data.append(UInt8((bits >> (8 * UInt64(i))) & 0xff)) }
        var w = [UInt32](repeating: 0, count: 64)
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        for block in stride(from: 0, to: data.count, by: 64) {
            for t in 0..<16 {
                let j = block + 4 * t
                w[t] = UInt32(data[j]) << 24 | UInt32(data[j + 1]) << 16 | UInt32(data[j + 2]) << 8 | UInt32(data[j + 3])
            }
            for t in 16..<64 {
                let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
            for t in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[t] &+ w[t]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
            }
            h[0] = h[0] &+ a; h[1] = h[1] &+ b; h[2] = h[2] &+ c; h[3] = h[3] &+ d
            h[4] = h[4] &+ e; h[5] = h[5] &+ f; h[6] = h[6] &+ g; h[7] = h[7] &+ hh
        }
        return h.flatMap { v in (0..<4).map { UInt8((v >> (24 - 8 * UInt32($0))) & 0xff) } }
    }
}
