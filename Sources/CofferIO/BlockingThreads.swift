import Dispatch
import Foundation
import Synchronization

/// Threads of their own for work that waits on the disk (pack and data-file writes, a
/// restore's pack reads), apart from libdispatch's pool.
///
/// Why: libdispatch's concurrent queues on Linux share one pool as wide as the cores, and a
/// thread blocked in `pwrite` or in a wait for one still counts as busy until a monitor notices,
/// tens of milliseconds later. Pack writes run in that pool took one of two compute threads
/// 20% of a full backup (measured with sched_switch stacks: 1.8 s of 11 CPU-s), leaving a core
/// idle while batches were queued. Threads here only ever wait; they cost no compute slot.
///
/// A thread starts when a job comes and none is idle, and then stays. There is no cap: a job
/// may wait for jobs submitted after it (a pack write waits for its file's direct writes), so
/// a capped pool could deadlock. The callers bound how many jobs they have at once (packs
/// being written, a file's writes in flight, a restore's read window), and so the threads.
/// Jobs start in the order they were submitted.
public final class BlockingThreads: Sendable {
    /// Shared by every user in the process.
    public static let shared = BlockingThreads()

    private struct State {
        var jobs: [(@Sendable () -> Void)?] = []
        var head = 0
        var idle = 0
    }
    private let state = Mutex(State())
    /// One signal a job: a thread that gets through `wait` has a job to take.
    private let ready = DispatchSemaphore(value: 0)

    public init() {}

    /// Runs `job` on one of the threads.
    public func run(_ job: @escaping @Sendable () -> Void) {
        let spawn = state.withLock { s -> Bool in
            s.jobs.append(job)
            return s.jobs.count - s.head > s.idle
        }
        if spawn {
            let thread = Thread { [self] in loop() }
            thread.name = "coffer-io"
            thread.start()
        }
        ready.signal()
    }

    private func loop() {
        while true {
            state.withLock { $0.idle += 1 }
            ready.wait()
            let job = state.withLock { s -> @Sendable () -> Void in
                s.idle -= 1
                let job = s.jobs[s.head]!
                // Let go of it at once: its captures may hold buffers.
                s.jobs[s.head] = nil
                s.head += 1
                if s.head == s.jobs.count {
                    s.jobs.removeAll(keepingCapacity: true)
                    s.head = 0
                } else if s.head >= 64 {
                    s.jobs.removeFirst(s.head)
                    s.head = 0
                }
                return job
            }
            job()
        }
    }
}
