import Foundation

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for gigabyte streams and
/// the same in every test target and in the fault plugin, so tests can predict content.
public struct TestBytes {
    private var state: UInt64

    public init(seed: UInt64) { state = seed | 1 }

    public mutating func fill(_ buf: UnsafeMutableRawBufferPointer) {
        var i = 0
        while i + 8 <= buf.count {
            buf.storeBytes(of: next(), toByteOffset: i, as: UInt64.self)
            i += 8
        }
        if i < buf.count {
            var w = next()
            while i < buf.count {
                buf[i] = UInt8(truncatingIfNeeded: w)
                w >>= 8
                i += 1
            }
        }
    }

    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBytes { fill($0) }
        return out
    }

    private mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545F4914F6CDD1D
    }
}

/// Where the build put its executables (coffer, the plugins): next to the test bundle.
public enum BuildProducts {
    public static func directory(containing executable: String) -> String {
        if let env = ProcessInfo.processInfo.environment["COFFER_BUILD_DIR"] { return env }
        let candidates = [Bundle.main.bundleURL.deletingLastPathComponent().path,
                          URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: "\($0)/\(executable)") } ?? candidates[0]
    }
}
