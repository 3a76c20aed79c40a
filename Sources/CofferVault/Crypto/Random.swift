import CLibCrypto

enum SecureRandom {
    /// Bytes from OpenSSL's CSPRNG; a failure here means the process cannot be trusted to go on.
    static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "RAND_bytes failed")
        return out
    }
}
