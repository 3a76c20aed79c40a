/// Consecutive chunks of one stream laid end to end in one block of memory: what `store`
/// hands a worker at once. Fixed-size and whole chunks are read straight into it, so a
/// data file's bytes are copied once on this side (out of the plugin's pipe), not a second
/// time out of a chunker's buffer. Its memory is uninitialized until filled, so a batch
/// maps only the pages its chunks touch.
final class ChunkBatch: @unchecked Sendable {
    /// Room for a full batch plus one maximal chunk (which may begin just under the limit).
    static let capacity = BackupSession.batchBytes + ChunkerSpec.wholeLimit

    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: ChunkBatch.capacity, alignment: 64)
    /// Where each chunk ends; chunk i is `memory[ends[i-1] ..< ends[i]]`.
    private(set) var ends: [Int] = []

    deinit { memory.deallocate() }

    var used: Int { ends.last ?? 0 }
    var count: Int { ends.count }
    /// The memory after the last chunk.
    var free: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: memory[used...]) }

    func append(length: Int) {
        precondition(length > 0 && used + length <= memory.count)
        ends.append(used + length)
    }

    func chunk(_ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: memory[(i == 0 ? 0 : ends[i - 1]) ..< ends[i]])
    }

    /// Empty again, for its next use (`BufferPool`); its pages stay mapped.
    func reset() { ends.removeAll(keepingCapacity: true) }
}
