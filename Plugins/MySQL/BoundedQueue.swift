import Foundation

/// A blocking FIFO bounded by the bytes it holds: producers wait while it is full, so a
/// reader that runs ahead of the writer holds at most `capacity` bytes in memory.
final class BoundedQueue<Element>: @unchecked Sendable {
    /// Taken items are set to nil at once: one kept until the next compaction would keep
    /// its memory (and a restore's slot of shared memory) long after it was written.
    private var items: [(Element, Int)?] = []
    private var head = 0
    private var bytes = 0
    private var closed = false
    private var failure: Error?
    private let capacity: Int
    private let condition = NSCondition()

    init(capacity: Int) { self.capacity = capacity }

    /// Waits for room (one item always fits); throws once the queue was failed.
    func push(_ item: Element, size: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        while bytes > 0 && bytes + size > capacity && failure == nil { condition.wait() }
        if let failure { throw failure }
        items.append((item, size))
        bytes += size
        condition.broadcast()
    }

    /// The next item, or nil once the queue is closed and empty; throws once failed.
    func pop() throws -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count && !closed && failure == nil { condition.wait() }
        if let failure { throw failure }
        guard head < items.count else { return nil }
        let (item, size) = items[head]!
        items[head] = nil
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        bytes -= size
        condition.broadcast()
        return item
    }

    /// No more items will come.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Wakes everyone with this error (the first one wins).
    func fail(_ error: Error) {
        condition.lock()
        if failure == nil { failure = error }
        condition.broadcast()
        condition.unlock()
    }
}
