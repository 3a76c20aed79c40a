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

/// A TCP port on 127.0.0.1 that nothing listens on now: the kernel's pick for a socket bound
/// to port 0. (Another process could take it before the server does; fixtures start at once.)
public enum LoopbackPort {
    public static func free() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw FixtureError("bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
