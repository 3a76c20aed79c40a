import CLibCrypto

/// AES-256-GCM through libcrypto. Sealed form: 12-byte random nonce, ciphertext, 16-byte tag.
public enum AESGCM {
    public static let nonceSize = 12
    public static let tagSize = 16
    public static let overhead = nonceSize + tagSize

    /// Encrypts `parts` (concatenated) so that callers can put a one-byte header in front of a
    /// large payload without copying the payload first.
    public static func seal(key: [UInt8], aad: [UInt8], parts: [UnsafeRawBufferPointer]) -> [UInt8] {
        precondition(key.count == 32)
        let total = parts.reduce(0) { $0 + $1.count }
        var out = [UInt8](repeating: 0, count: total + overhead)
        let nonce = SecureRandom.bytes(nonceSize)
        let ctx = EVP_CIPHER_CTX_new()!
        defer { EVP_CIPHER_CTX_free(ctx) }
        out.withUnsafeMutableBufferPointer { o in
            let base = o.baseAddress!
            nonce.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: nonceSize) }
            var len: Int32 = 0
            key.withUnsafeBufferPointer { k in
                precondition(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress, base) == 1)
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
        return out
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
                EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress, base)
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

    public static func open(key: [UInt8], aad: [UInt8], _ sealed: [UInt8]) -> [UInt8]? {
        sealed.withUnsafeBytes { open(key: key, aad: aad, $0) }
    }
}
