import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a `locks/` object says (docs/decisions/009): a writer in progress (`w-<16 hex>`) or
/// the one prune allowed at a time (`prune`). Plain JSON: it names a host and a process,
/// nothing secret.
public struct LockRecord: Codable, Sendable, Equatable {
    public var version = 1
    /// `writer` or `prune`.
    public var kind: String
    public var host: String
    public var pid: Int32
    /// When the holder began (its clock). A writer that began before a deletion plan was
    /// made may have loaded the index the plan superseded.
    public var started: Date
    /// Rewritten every `LockRecord.refreshInterval` while the holder lives.
    public var refreshed: Date

    public static let refreshInterval: TimeInterval = 300
    /// A record not refreshed for this long belongs to a holder that is gone (or hung).
    public static let staleAfter: TimeInterval = 1800

    static func mine(kind: String, now: Date = Date()) -> LockRecord {
        LockRecord(kind: kind, host: ProcessInfo.processInfo.hostName, pid: getpid(), started: now, refreshed: now)
    }

    /// Whether the holder is certainly or presumably gone: a process of this host that no
    /// longer exists, or a record not refreshed within `staleAfter`.
    func isStale(now: Date, staleAfter: TimeInterval = LockRecord.staleAfter) -> Bool {
        if host == ProcessInfo.processInfo.hostName, kill(pid, 0) != 0, errno == ESRCH { return true }
        return now.timeIntervalSince(refreshed) > staleAfter
    }

    var holder: String { "\(kind) pid \(pid) on \(host), started \(Timestamp.format(started))" }

    static func decode(_ bytes: [UInt8]) -> LockRecord? { try? JSON.decoder().decode(LockRecord.self, from: Data(bytes)) }
    func encoded() throws -> [UInt8] { Array(try JSON.encoder().encode(self)) }
}

/// A lock object held by this process: written at once, refreshed on a timer, removed by
/// `release` (or at deinit). A process killed outright leaves it behind; the next prune sees
/// it is stale (the process is gone, or it stopped being refreshed).
public final class HeldLock: @unchecked Sendable {
    public let name: String
    private let backend: any VaultBackend
    private let lock = NSLock()
    private var record: LockRecord
    private var released = false
    private let timer: DispatchSourceTimer

    /// Writes a writer marker `locks/w-<random>`; durable before this returns, so that a
    /// prune listing markers afterwards sees it.
    public static func writer(backend: any VaultBackend) throws -> HeldLock {
        let record = LockRecord.mine(kind: "writer")
        let name = "w-" + Hex.encode(SecureRandom.bytes(8))
        try backend.write(.locks, name, try record.encoded())
        return HeldLock(backend: backend, name: name, record: record)
    }

    /// Takes `locks/prune`, taking over one whose holder is stale; throws `pruneLocked`
    /// while a live prune holds it.
    public static func prune(backend: any VaultBackend, now: Date = Date()) throws -> HeldLock {
        let record = LockRecord.mine(kind: "prune")
        for _ in 0..<3 {
            if try backend.createExclusive(.locks, "prune", try record.encoded()) {
                return HeldLock(backend: backend, name: "prune", record: record)
            }
            let existing = (try? backend.read(.locks, "prune")).flatMap(LockRecord.decode)
            if let existing, !existing.isStale(now: now) { throw VaultError.pruneLocked(holder: existing.holder) }
            // Stale (or unreadable, i.e. torn by a crash of a backend without atomic writes).
            try backend.remove(.locks, "prune")
        }
        throw VaultError.pruneLocked(holder: "another prune keeps taking the lock")
    }

    private init(backend: any VaultBackend, name: String, record: LockRecord) {
        self.backend = backend
        self.name = name
        self.record = record
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        timer.schedule(deadline: .now() + LockRecord.refreshInterval, repeating: LockRecord.refreshInterval)
        timer.setEventHandler { [weak self] in self?.refresh() }
        timer.resume()
    }

    deinit { release() }

    private func refresh() {
        lock.lock()
        defer { lock.unlock() }
        guard !released else { return }
        record.refreshed = Date()
        // A failed refresh is retried at the next tick; only staleAfter of them in a row
        // would let a prune take the holder for gone.
        if let bytes = try? record.encoded() { try? backend.write(.locks, name, bytes) }
    }

    /// Removes the lock object. Idempotent.
    public func release() {
        lock.lock()
        defer { lock.unlock() }
        guard !released else { return }
        released = true
        timer.cancel()
        try? backend.remove(.locks, name)
    }
}

/// Every lock object of the vault, read tolerantly (an unreadable one counts as a live
/// writer that began at the dawn of time: it blocks deletions until someone looks).
struct LockTable {
    var writers: [(name: String, record: LockRecord?)] = []

    init(backend: any VaultBackend) throws {
        for name in try backend.list(.locks) where name.hasPrefix("w-") {
            let record = (try? backend.read(.locks, name)).flatMap(LockRecord.decode)
            // Released between the listing and the read: not a writer any more.
            if record == nil, !(try backend.exists(.locks, name)) { continue }
            writers.append((name, record))
        }
    }

    /// Writers that may have loaded an index superseded at `time` (by the deleter's clock):
    /// live ones that began before `time + skew`.
    func blocking(since time: Date, skew: TimeInterval, now: Date) -> [String] {
        writers.compactMap { w in
            guard let r = w.record else { return "\(w.name) (unreadable)" }
            if r.isStale(now: now) { return nil }
            return r.started <= time.addingTimeInterval(skew) ? r.holder : nil
        }
    }

    /// Markers of processes of this host that no longer exist: safe to remove.
    func dead(now: Date) -> [String] {
        writers.compactMap { w in
            guard let r = w.record, r.host == ProcessInfo.processInfo.hostName, r.isStale(now: now, staleAfter: .infinity) else { return nil }
            return w.name
        }
    }
}
