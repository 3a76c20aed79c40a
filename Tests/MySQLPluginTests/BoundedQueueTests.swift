@testable import coffer_mysql
import XCTest

final class BoundedQueueTests: XCTestCase {
    private final class Token {}

    /// An item is let go as soon as it is taken: the queue keeping it (until a compaction,
    /// a thousand items later) kept a restore's slots of shared memory, and the restore hung.
    func testTakenItemsAreNotKept() throws {
        let queue = BoundedQueue<Token>(capacity: 1 << 20)
        weak var first: Token?
        do {
            let token = Token()
            first = token
            try queue.push(token, size: 10)
            try queue.push(Token(), size: 10)
        }
        XCTAssertNotNil(first, "held while queued")
        XCTAssertNotNil(try queue.pop())
        XCTAssertNil(first, "let go once taken")
        queue.close()
        XCTAssertNotNil(try queue.pop())
        XCTAssertNil(try queue.pop())
    }
}
