/// A blob's id: HMAC-SHA256 under the vault's id key of the type byte and the plaintext.
/// Stored as four words so that the in-memory index stays compact and hashes quickly.
public struct BlobID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= 32)
        w0 = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        w1 = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        w2 = bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        w3 = bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
    }

    public init(bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { BlobID(bytes: $0) }
    }

    public init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: w0, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
            b.storeBytes(of: w2, toByteOffset: 16, as: UInt64.self)
            b.storeBytes(of: w3, toByteOffset: 24, as: UInt64.self)
        }
        return out
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }

    // The id is already a keyed MAC: one word is as good a hash as all four.
    public func hash(into hasher: inout Hasher) { hasher.combine(w0) }

    public static func < (a: BlobID, b: BlobID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

public enum BlobType: UInt8, Sendable, Codable {
    /// Stream content.
    case data = 0
    /// A list of blob ids (32 bytes each) naming the content of a large artifact.
    case list = 1
}

/// Associated data for the AES-GCM seal of each kind of object, so that a ciphertext moved
/// from one role to another (a blob into a manifest, blob A into blob B) fails to open.
enum AssociatedData {
    static func blob(_ id: BlobID, _ type: BlobType) -> [UInt8] {
        Array("coffer-blob-v1".utf8) + [type.rawValue] + id.bytes
    }
    static let packHeader = Array("coffer-pack-header-v1".utf8)
    static let index = Array("coffer-index-v1".utf8)
    static let manifest = Array("coffer-manifest-v1".utf8)
    static func keySlot(vaultID: String) -> [UInt8] { Array("coffer-keyslot-v1:\(vaultID)".utf8) }
}
