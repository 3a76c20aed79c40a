/// Consecutive chunks of one stream: what `store` hands a worker at once. A chunk is either
/// copied into the batch's own memory (fixed-size and whole chunks are read straight into
/// it, so a data file's bytes are copied once on this side, not a second time out of a
/// chunker's buffer), or lent: it lies in memory its producer lent the session (a slot of
/// shared memory, `LentBytes`), which the batch keeps alive until it is reset. A batch
/// holds at most one lender, so that a stream's producer gets its memory back batch by
/// batch. Its own memory is uninitialized until filled, so a batch maps only the pages its
/// copied chunks touch.
final class ChunkBatch: @unchecked Sendable {
    /// Room for a full batch plus one maximal chunk (which may begin just under the limit).
    static let capacity = BackupSession.batchBytes + ChunkerSpec.wholeLimit

    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: ChunkBatch.capacity, alignment: 64)
    private var chunks: [UnsafeRawBufferPointer] = []
    /// Bytes of every chunk, and of those copied into `memory`.
    private(set) var used = 0
    private var copied = 0
    /// What keeps the lent chunks' memory valid.
    private(set) var lender: AnyObject?

    deinit { memory.deallocate() }

    var count: Int { chunks.count }
    /// Bytes of the lent chunks.
    var lent: Int { used - copied }
    /// The memory after the last copied chunk.
    var free: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: memory[copied...]) }

    /// Adds the `length` bytes just written at the front of `free`.
    func append(length: Int) {
        precondition(length > 0 && copied + length <= memory.count)
        chunks.append(UnsafeRawBufferPointer(rebasing: memory[copied ..< copied + length]))
        copied += length
        used += length
    }

    /// Adds a chunk in lent memory, which `owner` keeps valid.
    func append(lent chunk: UnsafeRawBufferPointer, owner: AnyObject) {
        precondition(chunk.count > 0 && (lender == nil || lender === owner))
        lender = owner
        chunks.append(chunk)
        used += chunk.count
    }

    func chunk(_ i: Int) -> UnsafeRawBufferPointer { chunks[i] }

    /// Empty again, for its next use (`BufferPool`); its pages stay mapped, and lent memory
    /// goes back to its producer.
    func reset() {
        chunks.removeAll(keepingCapacity: true)
        used = 0
        copied = 0
        lender = nil
    }
}
