import Foundation

/// A bounded queue of byte pieces from one producer thread to one consumer.
final class Channel: @unchecked Sendable {
    private let condition = NSCondition()
    private var pieces: [[UInt8]] = []
    private var bytes = 0
    private var closed = false
    private var failure: Error?
    private var abandoned = false
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Blocks while the queue holds `limit` bytes; false once the consumer gave up.
    func put(_ piece: [UInt8]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while bytes >= limit && !abandoned { condition.wait() }
        if abandoned { return false }
        pieces.append(piece)
        bytes += piece.count
        condition.broadcast()
        return true
    }

    func close(_ error: Error? = nil) {
        condition.lock()
        closed = true
        failure = error
        condition.broadcast()
        condition.unlock()
    }

    /// The next piece, nil at the end; rethrows the producer's error.
    func take() throws -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        while pieces.isEmpty && !closed { condition.wait() }
        if !pieces.isEmpty {
            let p = pieces.removeFirst()
            bytes -= p.count
            condition.broadcast()
            return p
        }
        if let failure { throw failure }
        return nil
    }

    func abandon() {
        condition.lock()
        abandoned = true
        pieces = []
        condition.broadcast()
        condition.unlock()
    }
}

/// Reads collections on several connections at once, handing each collection's documents
/// (raw BSON, concatenated, in ~1 MiB pieces) to the consumer in collection order. Readers
/// take collections in that order and read ahead a bounded amount, so the one pipe to the
/// agent stays busy while the next collections are already being read.
struct ParallelReader {
    let uri: String
    let workers: Int
    let readAhead: Int

    func read(_ namespaces: [Namespace], consume: (Int, Channel) throws -> Void) throws {
        let channels = namespaces.map { _ in Channel(limit: readAhead) }
        let next = Counter()
        let group = DispatchGroup()
        for _ in 0..<min(workers, namespaces.count) {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var client: MongoClient?
                while let i = next.take(below: namespaces.count) {
                    do {
                        if client == nil { client = try MongoClient(uri: uri) }
                        try ParallelReader.readOne(namespaces[i], client: client!, into: channels[i])
                        channels[i].close()
                    } catch {
                        channels[i].close(error)
                    }
                }
            }
        }
        defer {
            channels.forEach { $0.abandon() }
            group.wait()
        }
        for i in namespaces.indices { try consume(i, channels[i]) }
    }

    static func readOne(_ ns: Namespace, client: MongoClient, into channel: Channel) throws {
        let cursor = try client.find(ns.database, ns.collection, opts: ["batchSize": .int32(10_000)])
        var piece: [UInt8] = []
        piece.reserveCapacity(1 << 20)
        while try cursor.next({ raw in piece.append(contentsOf: raw) }) != nil {
            if piece.count >= 1 << 20 {
                guard channel.put(piece) else { return }
                piece.removeAll(keepingCapacity: true)
            }
        }
        if !piece.isEmpty { _ = channel.put(piece) }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func take(below limit: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}
