import Synchronization

/// Recycles byte arrays on the hot path. Without it every chunk costs fresh pages for its
/// copy, its compressed form and its sealed form, and the kernel spends more time zeroing
/// pages than the pipeline spends encrypting them. Bounded: extra buffers are dropped.
final class BufferPool: Sendable {
    private let free = Mutex<[[UInt8]]>([])
    private let limit: Int
    private let emptied: Bool

    /// - Parameter emptied: false hands buffers back with their old bytes, for scratch
    ///   space that is written before it is read (`grow(to:)` then zero-fills nothing).
    init(limit: Int, emptied: Bool = true) {
        self.limit = limit
        self.emptied = emptied
    }

    /// An array from an earlier use when one is free (empty, unless the pool keeps bytes).
    func take() -> [UInt8] {
        free.withLock { $0.popLast() } ?? []
    }

    func give(_ buffer: consuming [UInt8]) {
        if emptied { buffer.removeAll(keepingCapacity: true) }
        let b = buffer
        free.withLock { list in
            if list.count < limit { list.append(b) }
        }
    }
}
