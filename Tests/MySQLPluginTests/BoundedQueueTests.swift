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

final class LogicalRestoreOrderTests: XCTestCase {
    /// Each worker loads one table at a time, all its parts in order; the workers' tables
    /// take turns, a part each; a worker done with its table takes the next one.
    func testWorkersTakeTurnsOneTableEach() {
        let parts = [["a", "a.2", "a.3"], ["b"], ["c", "c.2"], ["d", "d.2"]]
        let order = LogicalRestore.fetchOrder(parts: parts, workers: 2)
        XCTAssertEqual(order.map(\.name), ["a", "b", "a.2", "c", "a.3", "c.2", "d", "d.2"])
        XCTAssertEqual(order.map(\.worker), [0, 1, 0, 1, 0, 1, 0, 0])
        XCTAssertEqual(order.map(\.table), [0, 1, 0, 2, 0, 2, 3, 3])
        // Every part exactly once, each table's in order, one worker a table.
        for (t, names) in parts.enumerated() {
            XCTAssertEqual(order.filter { $0.table == t }.map(\.name), names)
            XCTAssertEqual(Set(order.filter { $0.table == t }.map(\.worker)).count, 1)
        }
        XCTAssertEqual(LogicalRestore.fetchOrder(parts: parts, workers: 1).map(\.name), parts.flatMap { $0 })
    }

    /// A table's parts are found among a backup's artifacts by number, not by text order,
    /// and a table whose name extends another's is not taken for its parts.
    func testPartsAreFoundInNumericOrder() {
        let names = ["schema.json", "data/db/t.sql", "data/db/t.sql.10", "data/db/t.sql.2", "data/db/t.sql.sql",
                     "data/db/t.sql.3", "data/db/t.sql.x", "data/db/u.sql"]
        XCTAssertEqual(DumpFormat.parts(of: "data/db/t.sql", in: names),
                       ["data/db/t.sql", "data/db/t.sql.2", "data/db/t.sql.3", "data/db/t.sql.10"])
        XCTAssertEqual(DumpFormat.parts(of: "data/db/u.sql", in: names), ["data/db/u.sql"])
    }
}
