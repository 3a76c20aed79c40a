import CLibCrypto

/// AES-256-GCM through libcrypto. Sealed form: 12-byte random nonce, ciphertext, 16-byte tag.
public enum AESGCM {
    public static let nonceSize = 12
    public static let tagSize = 16
    public static let overhead = nonceSize + tagSize

    /// Fetched once: with OpenSSL 3's `EVP_aes_256_gcm()` every init looks the cipher up in
    /// the provider tables again (a lock and string compares), once per blob.
    nonisolated(unsafe) private static let cipher: OpaquePointer = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil) ?? EVP_aes_256_gcm()

    /// Encrypts `parts` (concatenated) so that callers can put a one-byte header in front of a
    /// large payload without copying the payload first.
    public static func seal(key: [UInt8], aad: [UInt8], parts: [UnsafeRawBufferPointer]) -> [UInt8] {
        var out: [UInt8] = []
        let n = seal(key: key, aad: aad, parts: parts, into: &out, at: 0)
        precondition(n == out.count)
        return out
    }

    /// Writes the sealed form of `parts` into `out` at `startCount`, growing `out` when it is
    /// too small (it may be a reused scratch buffer, never shrunk). Returns the sealed length.
    @discardableResult
    public static func seal(key: [UInt8], aad: [UInt8], parts: [UnsafeRawBufferPointer], into out: inout [UInt8],
                            at startCount: Int) -> Int {
        precondition(key.count == 32)
        let total = parts.reduce(0) { $0 + $1.count }
        out.grow(to: startCount + total + overhead)
        let ctx = EVP_CIPHER_CTX_new()!
        defer { EVP_CIPHER_CTX_free(ctx) }
        out.withUnsafeMutableBufferPointer { o in
            let base = o.baseAddress! + startCount
            precondition(RAND_bytes(base, Int32(nonceSize)) == 1, "RAND_bytes failed")
            var len: Int32 = 0
            key.withUnsafeBufferPointer { k in
                precondition(EVP_EncryptInit_ex(ctx, cipher, nil, k.baseAddress, base) == 1)
            }
            if !aad.isEmpty {
                aad.withUnsafeBufferPointer { a in
                    precondition(EVP_EncryptUpdate(ctx, nil, &len, a.baseAddress, Int32(a.count)) == 1)
                }
            }
            var offset = nonceSize
            for part in parts where part.count > 0 {
                // EVP takes an Int32 length; feed big parts in slices.
                var done = 0
                while done < part.count {
                    let n = min(part.count - done, 1 << 30)
                    let src = part.baseAddress!.advanced(by: done).assumingMemoryBound(to: UInt8.self)
                    precondition(EVP_EncryptUpdate(ctx, base + offset, &len, src, Int32(n)) == 1)
                    offset += Int(len)
                    done += n
                }
            }
            precondition(EVP_EncryptFinal_ex(ctx, base + offset, &len) == 1)
            offset += Int(len)
            precondition(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagSize), base + offset) == 1)
        }
        return total + overhead
    }

    public static func seal(key: [UInt8], aad: [UInt8], _ plaintext: [UInt8]) -> [UInt8] {
        plaintext.withUnsafeBytes { seal(key: key, aad: aad, parts: [$0]) }
    }

    /// Returns nil when the tag does not verify (wrong key, wrong associated data, or any
    /// changed byte).
    public static func open(key: [UInt8], aad: [UInt8], _ sealed: UnsafeRawBufferPointer) -> [UInt8]? {
        guard sealed.count >= overhead else { return nil }
        let n = sealed.count - overhead
        var out = [UInt8](repeating: 0, count: n)
        let ctx = EVP_CIPHER_CTX_new()!
        defer { EVP_CIPHER_CTX_free(ctx) }
        let base = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var len: Int32 = 0
        let ok: Bool = out.withUnsafeMutableBufferPointer { o in
            let ok1 = key.withUnsafeBufferPointer { k in
                EVP_DecryptInit_ex(ctx, cipher, nil, k.baseAddress, base)
            }
            guard ok1 == 1 else { return false }
            if !aad.isEmpty {
                let ok2 = aad.withUnsafeBufferPointer { a in
                    EVP_DecryptUpdate(ctx, nil, &len, a.baseAddress, Int32(a.count))
                }
                guard ok2 == 1 else { return false }
            }
            var done = 0
            while done < n {
                let step = min(n - done, 1 << 30)
                guard EVP_DecryptUpdate(ctx, o.baseAddress! + done, &len, base + nonceSize + done, Int32(step)) == 1
                else { return false }
                done += step
            }
            let tag = UnsafeMutableRawPointer(mutating: base + nonceSize + n)
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagSize), tag) == 1 else { return false }
            var finalLen: Int32 = 0
            return EVP_DecryptFinal_ex(ctx, o.baseAddress! + n, &finalLen) == 1
        }
        return ok ? out : nil
    }

    /// Opens a sealed payload whose first plaintext byte says how the rest is encoded, writing
    /// the rest straight into `body` (grown if needed) with no copy. Returns the first byte and
    /// the body's length, or nil when the tag does not verify.
    static func open(key: [UInt8], aad: [UInt8], _ sealed: UnsafeRawBufferPointer,
                     splittingFirstByteInto body: inout [UInt8]) -> (first: UInt8, length: Int)? {
        guard sealed.count >= overhead + 1 else { return nil }
        let n = sealed.count - overhead - 1
        // Not zeroed first: every byte is decrypted into (a restore opens thousands of blobs).
        if body.count < n { body = [UInt8](unsafeUninitializedCapacity: n) { _, initialized in initialized = n } }
        return body.withUnsafeMutableBytes { out in
            open(key: key, aad: aad, sealed) { _, _ in out.baseAddress }
        }
    }

    /// The same, with the body written wherever `place` says once it knows the first byte and
    /// the body's length (nil: nowhere, and the open fails). The body is written before the tag
    /// is checked: on nil, whatever `place` gave holds bytes not to be trusted.
    static func open(key: [UInt8], aad: [UInt8], _ sealed: UnsafeRawBufferPointer,
                     placingBody place: (_ first: UInt8, _ length: Int) -> UnsafeMutableRawPointer?) -> (first: UInt8, length: Int)? {
        guard sealed.count >= overhead + 1 else { return nil }
        let n = sealed.count - overhead - 1
        let ctx = EVP_CIPHER_CTX_new()!
        defer { EVP_CIPHER_CTX_free(ctx) }
        let base = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var len: Int32 = 0
        var first: UInt8 = 0
        guard key.withUnsafeBufferPointer({ EVP_DecryptInit_ex(ctx, cipher, nil, $0.baseAddress, base) }) == 1
        else { return nil }
        if !aad.isEmpty {
            guard aad.withUnsafeBufferPointer({ EVP_DecryptUpdate(ctx, nil, &len, $0.baseAddress, Int32($0.count)) }) == 1
            else { return nil }
        }
        guard EVP_DecryptUpdate(ctx, &first, &len, base + nonceSize, 1) == 1 else { return nil }
        guard let raw = place(first, n) else { return nil }
        let o = raw.assumingMemoryBound(to: UInt8.self)
        var done = 0
        while done < n {
            let step = min(n - done, 1 << 30)
            guard EVP_DecryptUpdate(ctx, o + done, &len, base + nonceSize + 1 + done, Int32(step)) == 1
            else { return nil }
            done += step
        }
        let tag = UnsafeMutableRawPointer(mutating: base + nonceSize + 1 + n)
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagSize), tag) == 1 else { return nil }
        var finalLen: Int32 = 0
        var sink: UInt8 = 0
        return EVP_DecryptFinal_ex(ctx, &sink, &finalLen) == 1 ? (first, n) : nil
    }

    public static func open(key: [UInt8], aad: [UInt8], _ sealed: [UInt8]) -> [UInt8]? {
        sealed.withUnsafeBytes { open(key: key, aad: aad, $0) }
    }
}

extension Array where Element == UInt8 {
    /// Makes `count` at least `n`, zero-filling only the new part (scratch buffers grow once).
    mutating func grow(to n: Int) {
        if count < n { append(contentsOf: repeatElement(0, count: n - count)) }
    }
}
