/// A piece of a stream that its producer lends the session instead of the session copying
/// it out (a slot of the memory a plugin shares with the agent, decision 024): `bytes` stay
/// valid and unchanged as long as `owner` is alive. The session keeps the owner until every
/// chunk cut from the piece is stored, and no longer.
public struct LentBytes: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let owner: AnyObject

    public init(bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        self.bytes = bytes
        self.owner = owner
    }

    /// A copy of `bytes` in memory of its own, for a producer whose memory cannot be lent.
    public static func copying(_ bytes: UnsafeRawBufferPointer) -> LentBytes {
        let copy = OwnedMemory(copying: bytes)
        return LentBytes(bytes: UnsafeRawBufferPointer(copy.memory), owner: copy)
    }
}

private final class OwnedMemory {
    let memory: UnsafeMutableRawBufferPointer

    init(copying bytes: UnsafeRawBufferPointer) {
        memory = .allocate(byteCount: bytes.count, alignment: 64)
        memory.copyMemory(from: bytes)
    }

    deinit { memory.deallocate() }
}

/// A lending producer's pieces as one stream: the next `count` bytes lent on when they lie
/// in the current piece, or read (copied) across pieces otherwise.
final class LentStream {
    private let next: () throws -> LentBytes?
    private var current: LentBytes?
    private var offset = 0
    private var ended = false

    init(_ next: @escaping () throws -> LentBytes?) { self.next = next }

    /// Unread bytes in the current piece, taking the next piece when this one is read; 0 at
    /// the stream's end.
    func available() throws -> Int {
        while !ended, current.map({ offset == $0.bytes.count }) ?? true {
            current = nil  // the spent piece goes back now, not after the next one arrives
            offset = 0
            if let piece = try next() { current = piece } else { ended = true }
        }
        return ended ? 0 : current!.bytes.count - offset
    }

    /// What keeps the current piece valid (nil at the end).
    var owner: AnyObject? { current?.owner }

    /// The next `count` bytes, all in the current piece (`available` said so), lent on.
    func lend(_ count: Int) -> LentBytes {
        let piece = current!
        precondition(count <= piece.bytes.count - offset)
        defer { offset += count }
        return LentBytes(bytes: UnsafeRawBufferPointer(rebasing: piece.bytes[offset ..< offset + count]), owner: piece.owner)
    }

    /// Copies up to `buf.count` bytes of the current piece; 0 at the end. The `read` a chunker
    /// or a streamed store takes.
    func read(into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(try available(), buf.count)
        guard n > 0 else { return 0 }
        buf.baseAddress!.copyMemory(from: current!.bytes.baseAddress! + offset, byteCount: n)
        offset += n
        return n
    }
}
