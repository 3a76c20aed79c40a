import Synchronization

/// Recycles buffers on the hot path: byte arrays, and the batches `store` hands its
/// workers. Without it every chunk costs fresh pages for its copy, its compressed form and
/// its sealed form, and the kernel spends more time zeroing pages than the pipeline spends
/// encrypting them. Bounded: extra buffers are dropped.
final class BufferPool<Buffer: Sendable>: Sendable {
    private let free = Mutex<[Buffer]>([])
    private let limit: Int
    private let make: @Sendable () -> Buffer
    private let reset: @Sendable (inout Buffer) -> Void

    /// - Parameters:
    ///   - make: a new buffer, when none is free;
    ///   - reset: readies a buffer given back for its next use.
    init(limit: Int, make: @escaping @Sendable () -> Buffer, reset: @escaping @Sendable (inout Buffer) -> Void) {
        self.limit = limit
        self.make = make
        self.reset = reset
    }

    /// A buffer from an earlier use when one is free.
    func take() -> Buffer {
        free.withLock { $0.popLast() } ?? make()
    }

    func give(_ buffer: consuming Buffer) {
        var b = buffer
        reset(&b)
        free.withLock { list in
            if list.count < limit { list.append(b) }
        }
    }
}

extension BufferPool where Buffer == [UInt8] {
    /// - Parameter emptied: false hands arrays back with their old bytes, for scratch space
    ///   that is written before it is read (`grow(to:)` then zero-fills nothing).
    convenience init(limit: Int, emptied: Bool = true) {
        self.init(limit: limit, make: { [] }, reset: { if emptied { $0.removeAll(keepingCapacity: true) } })
    }
}
