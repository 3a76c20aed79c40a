import CofferIO
import Dispatch
import Synchronization
import XCTest

final class BlockingThreadsTests: XCTestCase {
    /// Jobs that wait for jobs submitted after them all run: a pool as wide as the cores (two
    /// here), or any fixed width below the count, would leave the last ones queued behind the
    /// waiting ones for ever. That is what a pack write waiting on its own direct writes needs.
    func testJobsWaitingForLaterJobsAllRun() {
        let threads = BlockingThreads()
        let count = 12
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let finished = DispatchGroup()
        let timedOut = Atomic<Int>(0)
        for _ in 0..<count {
            finished.enter()
            threads.run {
                started.signal()
                if release.wait(timeout: .now() + 30) == .timedOut { timedOut.add(1, ordering: .relaxed) }
                finished.leave()
            }
        }
        for i in 0..<count {
            guard started.wait(timeout: .now() + 30) == .success else {
                XCTFail("only \(i) of \(count) jobs started")
                break
            }
        }
        for _ in 0..<count { release.signal() }
        XCTAssertEqual(finished.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(timedOut.load(ordering: .relaxed), 0)
    }
}
