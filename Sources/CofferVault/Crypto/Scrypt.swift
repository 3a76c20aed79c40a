import CLibCrypto

public struct ScryptParameters: Codable, Sendable, Equatable {
    public var n: UInt64
    public var r: UInt64
    public var p: UInt64

    /// N=2^15, r=8, p=1: 32 MiB and about 0.1 s per try on this project's machines.
    public static let standard = ScryptParameters(n: 1 << 15, r: 8, p: 1)

    public init(n: UInt64, r: UInt64, p: UInt64) {
        self.n = n
        self.r = r
        self.p = p
    }

    /// Key slots are not authenticated before they are opened, so their parameters are
    /// bounded here: a crafted slot must not make us allocate gigabytes or overflow.
    public var isSane: Bool {
        n >= 2 && n <= 1 << 20 && n & (n - 1) == 0 && r >= 1 && r <= 32 && p >= 1 && p <= 16
    }

    public func deriveKey(passphrase: [UInt8], salt: [UInt8]) throws -> [UInt8] {
        guard isSane else { throw VaultError.invalidArgument("scrypt parameters out of range (n=\(n) r=\(r) p=\(p))") }
        var out = [UInt8](repeating: 0, count: 32)
        let maxmem = UInt64(128) * r * n * 2 + (1 << 20)
        // A trailing NUL keeps the buffer non-empty for an empty passphrase; it is not hashed.
        let terminated = passphrase.map { CChar(bitPattern: $0) } + [0]
        let ok = terminated.withUnsafeBufferPointer { pw in
            salt.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    EVP_PBE_scrypt(pw.baseAddress, passphrase.count, s.baseAddress, s.count,
                                   n, r, p, maxmem, o.baseAddress, 32)
                }
            }
        }
        guard ok == 1 else { throw VaultError.invalidArgument("scrypt parameters rejected (n=\(n) r=\(r) p=\(p))") }
        return out
    }
}
