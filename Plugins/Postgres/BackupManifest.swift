import CLibCrypto
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

/// SHA-256 through OpenSSL, for the manifest's own checksum.
enum SHA256 {
    static func hash(_ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = message.withUnsafeBytes { m in
            EVP_Digest(m.baseAddress, m.count, &out, &length, EVP_sha256(), nil)
        }
        precondition(ok == 1 && length == 32, "OpenSSL's SHA-256 failed")
        return out
    }
}
