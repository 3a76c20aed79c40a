import CLibCrypto

/// HMAC-SHA256 with the key schedule done once: the inner and outer pads are absorbed into
/// two digest states at construction, and every call starts from copies of them. This is
/// the blob-id function, so it runs on every chunk of every stream.
public final class HMACSHA256: @unchecked Sendable {
    // Read-only after init; EVP_MD_CTX_copy_ex only reads its source, so concurrent use is safe.
    private let inner: OpaquePointer
    private let outer: OpaquePointer

    public init(key: [UInt8]) {
        var block = [UInt8](repeating: 0, count: 64)
        if key.count > 64 {
            let digest = SHA256.hash(key)
            block.replaceSubrange(0..<32, with: digest)
        } else {
            block.replaceSubrange(0..<key.count, with: key)
        }
        let ipad = block.map { $0 ^ 0x36 }
        let opad = block.map { $0 ^ 0x5c }
        inner = EVP_MD_CTX_new()!
        outer = EVP_MD_CTX_new()!
        precondition(EVP_DigestInit_ex(inner, EVP_sha256(), nil) == 1)
        precondition(EVP_DigestInit_ex(outer, EVP_sha256(), nil) == 1)
        ipad.withUnsafeBytes { _ = EVP_DigestUpdate(inner, $0.baseAddress, 64) }
        opad.withUnsafeBytes { _ = EVP_DigestUpdate(outer, $0.baseAddress, 64) }
    }

    deinit {
        EVP_MD_CTX_free(inner)
        EVP_MD_CTX_free(outer)
    }

    /// MAC over the concatenation of `prefix` and `data`.
    public func mac(prefix: [UInt8] = [], _ data: UnsafeRawBufferPointer) -> [UInt8] {
        let ctx = EVP_MD_CTX_new()!
        defer { EVP_MD_CTX_free(ctx) }
        var innerDigest = [UInt8](repeating: 0, count: 32)
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        precondition(EVP_MD_CTX_copy_ex(ctx, inner) == 1)
        if !prefix.isEmpty { prefix.withUnsafeBytes { _ = EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) } }
        if data.count > 0 { _ = EVP_DigestUpdate(ctx, data.baseAddress, data.count) }
        innerDigest.withUnsafeMutableBufferPointer { _ = EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) }
        precondition(EVP_MD_CTX_copy_ex(ctx, outer) == 1)
        innerDigest.withUnsafeBytes { _ = EVP_DigestUpdate(ctx, $0.baseAddress, 32) }
        out.withUnsafeMutableBufferPointer { _ = EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) }
        return out
    }

    public func mac(prefix: [UInt8] = [], _ data: [UInt8]) -> [UInt8] {
        data.withUnsafeBytes { mac(prefix: prefix, $0) }
    }
}
