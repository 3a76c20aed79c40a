import Foundation

/// Documents of one collection to insert together: their bytes back to back.
struct InsertBatch: @unchecked Sendable {
    let ns: Namespace
    var bytes: [UInt8] = []
    var offsets: [Int] = []

    init(ns: Namespace) { self.ns = ns }

    mutating func add(_ doc: UnsafeRawBufferPointer) {
        offsets.append(bytes.count)
        bytes.append(contentsOf: doc)
    }

    var isEmpty: Bool { offsets.isEmpty }
    /// About what one bulk write should carry.
    var full: Bool { offsets.count >= 1000 || bytes.count >= 8 << 20 }

    func withDocuments<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { all in
            let ends = offsets.dropFirst() + [bytes.count]
            return try body(zip(offsets, ends).map { UnsafeRawBufferPointer(rebasing: all[$0..<$1]) })
        }
    }
}

/// Inserts batches on several connections at once; the first failure stops it and is
/// reported to the submitter.
final class ParallelInserter: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [InsertBatch] = []
    private var closed = false
    private var failure: Error?
    private let group = DispatchGroup()
    private let limit: Int

    init(uri: String, workers: Int) {
        limit = workers * 2
        for _ in 0..<workers {
            group.enter()
            Thread.detachNewThread { [self] in
                defer { group.leave() }
                var client: MongoClient?
                while let batch = take() {
                    do {
                        if client == nil { client = try MongoClient(uri: uri) }
                        try batch.withDocuments { try client!.insert(batch.ns.database, batch.ns.collection, documents: $0) }
                    } catch {
                        fail(error)
                    }
                }
            }
        }
    }

    private func take() -> InsertBatch? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty && !closed { condition.wait() }
        if failure != nil || queue.isEmpty { return nil }
        let b = queue.removeFirst()
        condition.broadcast()
        return b
    }

    private func fail(_ error: Error) {
        condition.lock()
        if failure == nil { failure = error }
        closed = true
        queue = []
        condition.broadcast()
        condition.unlock()
    }

    func submit(_ batch: InsertBatch) throws {
        condition.lock()
        defer { condition.unlock() }
        while queue.count >= limit && failure == nil { condition.wait() }
        if let failure { throw failure }
        queue.append(batch)
        condition.broadcast()
    }

    /// Waits for every batch; rethrows the first failure.
    func finish() throws {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
        group.wait()
        if let failure { throw failure }
    }

    func cancel() {
        fail(MongoError("cancelled"))
        group.wait()
    }
}
