#if canImport(Glibc)
import Glibc
#endif

/// The unit on the wire between the agent and a plugin: one kind byte, a little-endian u32
/// payload length, the payload. Control frames carry one JSON message; data frames carry
/// bytes of the artifact opened by the last `artifact.begin` sent in the same direction;
/// shared frames name a slot of shared memory holding such bytes (`SharedSlots`), and
/// readers hand them on as data frames.
public struct Frame: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case control = 1
        case data = 2
        case shared = 3
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
    /// Bytes of the data frame `nextLeavingData` returned that `readData` has not read yet.
    public private(set) var dataLeft = 0
    /// The memory `shared` frames name, once the hellos agreed on it.
    public var shared: SharedSlots?
    /// The slot holding the data frame `nextLeavingData` left, and how far it is read.
    private var sharedSlot: Int?
    private var sharedOffset = 0

    public init(fd: Int32, timeout: Double? = nil) {
        self.fd = fd
        self.timeout = timeout
    }

    /// The next frame, or nil at a clean end of stream (between frames).
    public func next() throws -> Frame? {
        try next(leavingData: false)
    }

    /// As `next`, except that a data frame comes back with an empty payload and its length
    /// in `dataLeft`, for `readData` to read straight into the caller's memory: one copy out
    /// of the kernel, and no array a frame. Its bytes must all be read before the next frame.
    public func nextLeavingData() throws -> Frame? {
        try next(leavingData: true)
    }

    /// As `next`, except that a data frame comes back as `piece` (with an empty payload):
    /// when it came through shared memory the bytes stay in their slot, uncopied, until the
    /// piece goes away (see `DataPiece` for how long a piece may be kept).
    public func next(piece: inout DataPiece?) throws -> Frame? {
        try next(leavingData: false, holding: true, piece: &piece)
    }

    /// Up to `buf.count` bytes of the data frame `nextLeavingData` left; 0 once it is all read.
    public func readData(into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        let want = min(buf.count, dataLeft)
        guard want > 0 else { return 0 }
        if let slot = sharedSlot, let shared {
            buf.baseAddress!.copyMemory(from: shared.slot(slot).baseAddress! + sharedOffset, byteCount: want)
            sharedOffset += want
            dataLeft -= want
            if dataLeft == 0 {
                sharedSlot = nil
                try shared.release(slot)
            }
            return want
        }
        let buffered = min(end - start, want)
        if buffered > 0 {
            buffer.withUnsafeBytes { buf.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: buffered) }
            start += buffered
            dataLeft -= buffered
            return buffered
        }
        while true {
            try waitReadable()
            let got = read(fd, buf.baseAddress!, want)
            if got < 0 {
                if errno == EINTR { continue }
                throw ProtocolError.io("read: \(String(cString: strerror(errno)))")
            }
            if got == 0 { throw ProtocolError.malformed("stream ended inside a frame") }
            dataLeft -= got
            return got
        }
    }

    private func next(leavingData: Bool) throws -> Frame? {
        var unused: DataPiece?
        return try next(leavingData: leavingData, holding: false, piece: &unused)
    }

    private func next(leavingData: Bool, holding: Bool, piece: inout DataPiece?) throws -> Frame? {
        precondition(dataLeft == 0, "the last data frame is not read to its end")
        piece = nil
        while true {
            guard let frame = try nextFrame(leavingData: leavingData, holding: holding, piece: &piece) else { return nil }
            // Short control frames only: `alive` is 16 bytes of JSON, give or take spaces.
            if dropsAlive, frame.kind == .control, frame.payload.count < 64, (try? Wire.type(of: frame)) == "alive" { continue }
            return frame
        }
    }

    private func nextFrame(leavingData: Bool, holding: Bool, piece: inout DataPiece?) throws -> Frame? {
        guard try ensure(Frame.headerSize, cleanEOFAllowed: true) else { return nil }
        guard let kind = Frame.Kind(rawValue: buffer[start]) else {
            throw ProtocolError.malformed("unknown frame kind \(buffer[start])")
        }
        let length = buffer.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: start + 1, as: UInt32.self))) }
        guard length <= Frame.maxPayload else {
            throw ProtocolError.malformed("frame of \(length) bytes exceeds the \(Frame.maxPayload)-byte limit")
        }
        start += Frame.headerSize
        if kind == .shared { return try sharedFrame(length: length, leavingData: leavingData, holding: holding, piece: &piece) }
        if leavingData && kind == .data {
            dataLeft = length
            return Frame(kind: kind, payload: [])
        }
        let payload: [UInt8]
        if length > buffer.count / 2 {
            // A data frame: read it straight into its own array, not through the buffer.
            payload = try readDirect(length)
        } else {
            _ = try ensure(length, cleanEOFAllowed: false)
            payload = Array(buffer[start..<(start + length)])
            start += length
        }
        if holding && kind == .data {
            piece = DataPiece(payload)
            return Frame(kind: kind, payload: [])
        }
        return Frame(kind: kind, payload: payload)
    }

    /// The data frame a `shared` frame stands for: left in its slot for `readData` or as a
    /// held piece, or copied out and the slot given back at once.
    private func sharedFrame(length: Int, leavingData: Bool, holding: Bool, piece: inout DataPiece?) throws -> Frame {
        guard let shared else { throw ProtocolError.malformed("a shared frame, but no shared memory was agreed on") }
        _ = try ensure(length, cleanEOFAllowed: false)
        let (slot, size) = try shared.parse(Array(buffer[start ..< (start + length)]))
        start += length
        if leavingData {
            dataLeft = size
            if size > 0 {
                sharedSlot = slot
                sharedOffset = 0
            } else {
                try shared.release(slot)
            }
            return Frame(kind: .data, payload: [])
        }
        if holding {
            piece = DataPiece(slot: slot, of: shared, count: size)
            return Frame(kind: .data, payload: [])
        }
        let payload = Array(UnsafeRawBufferPointer(rebasing: shared.slot(slot)[0 ..< size]))
        try shared.release(slot)
        return Frame(kind: .data, payload: payload)
    }

    /// `length` bytes: what the buffer holds already, then the rest read from the pipe into
    /// the new array (one copy out of the kernel instead of two).
    private func readDirect(_ length: Int) throws -> [UInt8] {
        let buffered = min(end - start, length)
        let payload = try [UInt8](unsafeUninitializedCapacity: length) { out, count in
            let base = UnsafeMutableRawPointer(out.baseAddress!)
            buffer.withUnsafeBytes { base.copyMemory(from: $0.baseAddress! + start, byteCount: buffered) }
            var filled = buffered
            while filled < length {
                try waitReadable()
                let got = read(fd, base + filled, length - filled)
                if got < 0 {
                    if errno == EINTR { continue }
                    throw ProtocolError.io("read: \(String(cString: strerror(errno)))")
                }
                if got == 0 { throw ProtocolError.malformed("stream ended inside a frame") }
                filled += got
            }
            count = length
        }
        start += buffered
        return payload
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

    private func waitReadable() throws { try pollReadable(fd, timeout: timeout) }
}

/// Waits until `fd` has something to read (or its end), at most `timeout` seconds (nil:
/// as long as it takes, and no system call).
func pollReadable(_ fd: Int32, timeout: Double?) throws {
    guard let timeout else { return }
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let r = poll(&pfd, 1, Int32(min(timeout * 1000, Double(Int32.max))))
        if r > 0 { return }
        if r == 0 { throw ProtocolError.timeout(seconds: timeout) }
        if errno != EINTR { throw ProtocolError.io("poll: \(String(cString: strerror(errno)))") }
    }
}

/// Writes frames to a file descriptor.
public final class FrameWriter: @unchecked Sendable {
    private let fd: Int32
    /// The memory data frames go through, once the hellos agreed on it: each piece is then
    /// written into a slot and the pipe carries a `shared` frame naming it.
    public var shared: SharedSlots?
    /// Where `sendData(filling:)` has bytes written when there is no shared memory.
    private var scratch: [UInt8] = []

    public init(fd: Int32) { self.fd = fd }

    public func send(_ frame: Frame) throws {
        precondition(frame.payload.count <= Frame.maxPayload)
        try frame.payload.withUnsafeBytes { try send(frame.kind, $0) }
    }

    /// One frame, header and payload in one writev.
    private func send(_ kind: Frame.Kind, _ payload: UnsafeRawBufferPointer) throws {
        var header: UInt64 = 0   // 8 bytes of room for the 5 of the header
        try withUnsafeMutableBytes(of: &header) { h in
            h[0] = kind.rawValue
            h.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 1, as: UInt32.self)
            try writeAll([UnsafeRawBufferPointer(rebasing: h[0..<Frame.headerSize]), payload])
        }
    }

    public func send<M: Encodable>(_ message: M) throws {
        try send(Frame(kind: .control, payload: try Wire.encode(message)))
    }

    /// Sends bytes as data frames of at most 1 MiB, straight from the caller's memory (one
    /// writev of header and payload a frame; no copy on this side of the pipe).
    public func sendData(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(1 << 20, bytes.count - offset)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
            if shared != nil && n > FrameWriter.inlineLimit {
                try sendData { slot in
                    slot.copyMemory(from: piece)
                    return piece.count
                }
            } else {
                try send(.data, piece)
            }
            offset += n
        }
    }

    /// Sends one data frame of what `fill` writes into the memory it is given (up to 1 MiB;
    /// it returns how many bytes it wrote): a slot of the shared memory when there is one, so
    /// that a file read into it is never copied on this side. Returns that count; 0 sends
    /// nothing. A `fill` that throws sends nothing either.
    @discardableResult
    public func sendData(filling fill: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Int {
        if let shared {
            let slot = try shared.acquire()
            let n: Int
            do {
                n = try fill(shared.slot(slot))
            } catch {
                shared.putBack(slot)
                throw error
            }
            precondition(n >= 0 && n <= SharedSlots.slotSize)
            guard n > 0 else {
                shared.putBack(slot)
                return 0
            }
            try send(Frame(kind: .shared, payload: SharedSlots.payload(slot: slot, length: n)))
            return n
        }
        if scratch.isEmpty { scratch = [UInt8](unsafeUninitializedCapacity: SharedSlots.slotSize) { _, n in n = SharedSlots.slotSize } }
        return try scratch.withUnsafeMutableBytes { buf in
            let n = try fill(buf)
            precondition(n >= 0 && n <= buf.count)
            if n > 0 { try send(.data, UnsafeRawBufferPointer(rebasing: buf[0 ..< n])) }
            return n
        }
    }

    /// Sends a slot of the shared memory that the caller acquired and filled (its first
    /// `length` bytes) as one data frame.
    public func send(filledSlot slot: Int, length: Int) throws {
        precondition(shared != nil && length > 0 && length <= SharedSlots.slotSize)
        try send(Frame(kind: .shared, payload: SharedSlots.payload(slot: slot, length: length)))
    }

    /// Sends several arrays as one data frame (header and all of them in one writev), for
    /// many small pieces: one frame and one system call instead of one each. Their total
    /// must be within `Frame.maxPayload`.
    public func sendData(parts: [[UInt8]]) throws {
        let total = parts.reduce(0) { $0 + $1.count }
        precondition(total <= Frame.maxPayload)
        if shared != nil && total > FrameWriter.inlineLimit && total <= SharedSlots.slotSize {
            try sendData { slot in
                var at = 0
                for part in parts where !part.isEmpty {
                    part.withUnsafeBytes { (slot.baseAddress! + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    at += part.count
                }
                return at
            }
            return
        }
        var header: UInt64 = 0
        try withUnsafeMutableBytes(of: &header) { h in
            h[0] = Frame.Kind.data.rawValue
            h.storeBytes(of: UInt32(total).littleEndian, toByteOffset: 1, as: UInt32.self)
            try FrameWriter.withBuffers(parts[...], [UnsafeRawBufferPointer(rebasing: h[0..<Frame.headerSize])]) {
                try writeAll($0)
            }
        }
    }

    /// The arrays' memory, each pinned for the call (nested: at most a few dozen deep).
    private static func withBuffers(_ arrays: ArraySlice<[UInt8]>, _ pinned: [UnsafeRawBufferPointer],
                                    _ body: ([UnsafeRawBufferPointer]) throws -> Void) throws {
        guard let first = arrays.first else { return try body(pinned) }
        try first.withUnsafeBytes { try withBuffers(arrays.dropFirst(), pinned + [$0], body) }
    }

    /// Writes every byte of `parts`, in order, with as few system calls as the pipe allows.
    private func writeAll(_ parts: [UnsafeRawBufferPointer]) throws {
        var vectors = parts.filter { $0.count > 0 }.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var first = 0
        while first < vectors.count {
            let n = vectors[first...].withUnsafeBufferPointer { writev(fd, $0.baseAddress, Int32($0.count)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw errno == EPIPE ? ProtocolError.closed : ProtocolError.io("write: \(String(cString: strerror(errno)))")
            }
            // Skip what was written: whole vectors, then part of the next.
            var left = n
            while first < vectors.count && left >= vectors[first].iov_len {
                left -= vectors[first].iov_len
                first += 1
            }
            if left > 0 {
                vectors[first].iov_base += left
                vectors[first].iov_len -= left
            }
        }
    }
}
