import Synchronization

/// Recycles buffers on the hot path: byte arrays, and the batches `store` hands its
/// workers. Without it every chunk costs fresh pages for its copy, its compressed form and
/// its sealed form, and the kernel spends more time zeroing pages than the pipeline spends
/// encrypting them. Bounded: extra buffers are dropped.
final class BufferPool<Buffer: Sendable>: Sendable {
    private let free = Mutex<[Buffer]>([])
    private let limit: Int
    private let make: @Sendable () -> Buffer
    private let reset: @Sendable (inout Buffer) -> Bool
    private let replaced = Atomic<Int>(0)

    /// - Parameters:
    ///   - make: a new buffer, when none is free;
    ///   - reset: readies a buffer given back for its next use; false when that took new
    ///     storage (an array still shared elsewhere is emptied into a new one).
    init(limit: Int, make: @escaping @Sendable () -> Buffer, reset: @escaping @Sendable (inout Buffer) -> Bool) {
        self.limit = limit
        self.make = make
        self.reset = reset
    }

    /// Buffers given back still shared, whose reset took new storage: each recycled nothing
    /// and cost fresh pages instead. Should stay 0; the pack writer's once did not (Packer).
    var replacedOnReturn: Int { replaced.load(ordering: .relaxed) }

    /// A buffer from an earlier use when one is free.
    func take() -> Buffer {
        free.withLock { $0.popLast() } ?? make()
    }

    func give(_ buffer: consuming Buffer) {
        var b = buffer
        if !reset(&b) { replaced.add(1, ordering: .relaxed) }
        free.withLock { list in
            if list.count < limit { list.append(b) }
        }
    }
}

extension BufferPool where Buffer == [UInt8] {
    /// - Parameter emptied: false hands arrays back with their old bytes, for scratch space
    ///   that is written before it is read (`grow(to:)` then zero-fills nothing).
    convenience init(limit: Int, emptied: Bool = true) {
        self.init(limit: limit, make: { [] }, reset: { array in
            guard emptied else { return true }
            let before = array.withUnsafeBufferPointer { $0.baseAddress }
            array.removeAll(keepingCapacity: true)
            return array.withUnsafeBufferPointer { $0.baseAddress } == before
        })
    }
}
