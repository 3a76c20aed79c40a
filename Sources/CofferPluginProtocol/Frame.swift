#if canImport(Glibc)
import Glibc
#endif

/// The unit on the wire between the agent and a plugin: one kind byte, a little-endian u32
/// payload length, the payload. Control frames carry one JSON message; data frames carry
/// bytes of the artifact opened by the last `artifact.begin` sent in the same direction.
public struct Frame: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case control = 1
        case data = 2
    }

    public var kind: Kind
    public var payload: [UInt8]

    public init(kind: Kind, payload: [UInt8]) {
        self.kind = kind
        self.payload = payload
    }

    /// Larger frames are a protocol violation; data is sent in pieces well under this.
    public static let maxPayload = 16 << 20
    public static let headerSize = 5
}

public enum ProtocolError: Error, CustomStringConvertible, Equatable {
    /// The peer closed its end (a plugin that exited or crashed).
    case closed
    case timeout(seconds: Double)
    case malformed(String)
    case io(String)
    /// The peer sent an `error` message: the job failed on its side.
    case peerFailed(String)

    public var description: String {
        switch self {
        case .closed: return "the other side closed the connection"
        case .timeout(let s): return "nothing received for \(Int(s)) s"
        case .malformed(let m): return "malformed frame: \(m)"
        case .io(let m): return m
        case .peerFailed(let m): return "failed: \(m)"
        }
    }
}

/// Reads frames from a file descriptor, failing after `timeout` seconds without a byte.
public final class FrameReader: @unchecked Sendable {
    private let fd: Int32
    public var timeout: Double?
    /// Drops `alive` messages (the agent's side: they only prove the plugin is working,
    /// which reading them already did by resetting the timeout).
    public var dropsAlive = false
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    private var start = 0
    private var end = 0

    public init(fd: Int32, timeout: Double? = nil) {
        self.fd = fd
        self.timeout = timeout
    }

    /// The next frame, or nil at a clean end of stream (between frames).
    public func next() throws -> Frame? {
        while true {
            guard let frame = try nextFrame() else { return nil }
            // Short control frames only: `alive` is 16 bytes of JSON, give or take spaces.
            if dropsAlive, frame.kind == .control, frame.payload.count < 64, (try? Wire.type(of: frame)) == "alive" { continue }
            return frame
        }
    }

    private func nextFrame() throws -> Frame? {
        guard try ensure(Frame.headerSize, cleanEOFAllowed: true) else { return nil }
        guard let kind = Frame.Kind(rawValue: buffer[start]) else {
            throw ProtocolError.malformed("unknown frame kind \(buffer[start])")
        }
        let length = buffer.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: start + 1, as: UInt32.self))) }
        guard length <= Frame.maxPayload else {
            throw ProtocolError.malformed("frame of \(length) bytes exceeds the \(Frame.maxPayload)-byte limit")
        }
        start += Frame.headerSize
        _ = try ensure(length, cleanEOFAllowed: false)
        let payload = Array(buffer[start..<(start + length)])
        start += length
        return Frame(kind: kind, payload: payload)
    }

    /// Makes `n` bytes available from `start`; false only on EOF before any byte of them.
    private func ensure(_ n: Int, cleanEOFAllowed: Bool) throws -> Bool {
        if end - start >= n { return true }
        if start > 0 {
            buffer.withUnsafeMutableBytes { b in
                b.baseAddress!.copyMemory(from: b.baseAddress! + start, byteCount: end - start)
            }
            end -= start
            start = 0
        }
        if buffer.count < n { buffer += [UInt8](repeating: 0, count: n - buffer.count) }
        while end < n {
            try waitReadable()
            let got = buffer.withUnsafeMutableBytes { b in read(fd, b.baseAddress! + end, b.count - end) }
            if got < 0 {
                if errno == EINTR { continue }
                throw ProtocolError.io("read: \(String(cString: strerror(errno)))")
            }
            if got == 0 {
                if cleanEOFAllowed && end == 0 { return false }
                throw end == 0 ? ProtocolError.closed : ProtocolError.malformed("stream ended inside a frame")
            }
            end += got
        }
        return true
    }

    private func waitReadable() throws {
        guard let timeout else { return }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let r = poll(&pfd, 1, Int32(min(timeout * 1000, Double(Int32.max))))
            if r > 0 { return }
            if r == 0 { throw ProtocolError.timeout(seconds: timeout) }
            if errno != EINTR { throw ProtocolError.io("poll: \(String(cString: strerror(errno)))") }
        }
    }
}

/// Writes frames to a file descriptor.
public final class FrameWriter: @unchecked Sendable {
    private let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    public func send(_ frame: Frame) throws {
        precondition(frame.payload.count <= Frame.maxPayload)
        var header = [frame.kind.rawValue]
        withUnsafeBytes(of: UInt32(frame.payload.count).littleEndian) { header += $0 }
        try writeAll(header)
        try writeAll(frame.payload)
    }

    public func send<M: Encodable>(_ message: M) throws {
        try send(Frame(kind: .control, payload: try Wire.encode(message)))
    }

    /// Sends bytes as data frames of at most 1 MiB.
    public func sendData(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(1 << 20, bytes.count - offset)
            try send(Frame(kind: .data, payload: Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))))
            offset += n
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = write(fd, b.baseAddress! + done, b.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw errno == EPIPE ? ProtocolError.closed : ProtocolError.io("write: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
    }
}
