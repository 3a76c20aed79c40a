import Foundation

/// Reads a pipe on a thread of its own into a bounded queue, so that the process writing it
/// (mariabackup) keeps reading its files while the agent is busy storing what came before:
/// read straight from the pipe, each waited on the other and their times added up.
final class ReadAhead: @unchecked Sendable {
    private let queue: BoundedQueue<[UInt8]>
    private var current: [UInt8] = []
    private var offset = 0
    private let done = DispatchSemaphore(value: 0)

    /// `read` fills a buffer and returns the count, 0 at the end.
    init(capacity: Int = 64 << 20, piece: Int = 1 << 20, read: @escaping @Sendable (UnsafeMutableRawBufferPointer) throws -> Int) {
        let queue = BoundedQueue<[UInt8]>(capacity: capacity)
        self.queue = queue
        let done = self.done
        Thread {
            defer { done.signal() }
            do {
                while true {
                    var n = 0
                    let bytes = try [UInt8](unsafeUninitializedCapacity: piece) { buffer, count in
                        n = try read(UnsafeMutableRawBufferPointer(buffer))
                        count = n
                    }
                    if n == 0 { break }
                    // Counted at the memory it holds: a short read from the pipe still keeps
                    // its whole piece, and the bound must hold for a trickle of small reads.
                    try queue.push(bytes, size: piece)
                }
                queue.close()
            } catch {
                queue.fail(error)
            }
        }.start()
    }

    /// Fills `buffer` from what was read ahead; 0 at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while offset == current.count {
            guard let next = try queue.pop() else { return 0 }
            current = next
            offset = 0
        }
        let n = min(buffer.count, current.count - offset)
        current.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
        }
        offset += n
        return n
    }

    /// Stops the thread (the consumer failed) and waits for it.
    func stop(_ error: Error) {
        queue.fail(error)
        done.wait()
    }

    /// Waits for the thread after the end was read.
    func finish() { done.wait() }
}
