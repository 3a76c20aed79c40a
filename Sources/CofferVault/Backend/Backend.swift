#if canImport(Glibc)
import Glibc
#endif

/// The kinds of object a vault holds; each lives under its own prefix.
public enum ObjectKind: String, Sendable, CaseIterable {
    case config
    case keys
    case packs
    case index
    case manifests
    /// Named references to log manifests ("which backup holds WAL segment X"), so a log
    /// is found by its name without reading every manifest.
    case logs
    /// Writers' in-progress markers and the prune lock (docs/decisions/009).
    case locks
    /// Deletion plans: packs garbage collection took out of the index and deletes once no
    /// writer that could still need them is running (docs/decisions/009).
    case gc

    var singular: String {
        switch self {
        case .config: return "config"
        case .keys: return "key slot"
        case .packs: return "pack"
        case .index: return "index file"
        case .manifests: return "manifest"
        case .logs: return "log reference"
        case .locks: return "lock"
        case .gc: return "deletion plan"
        }
    }
}

/// Where vault objects live. Objects are written once and never changed; `write` must be
/// atomic (a reader sees the whole object or none) and durable before it returns.
/// The core is synchronous and runs on its own threads; a remote backend blocks its caller.
public protocol VaultBackend: Sendable {
    /// Human-readable location, for messages.
    var location: String { get }
    func read(_ kind: ObjectKind, _ name: String) throws -> [UInt8]
    func read(_ kind: ObjectKind, _ name: String, offset: Int, length: Int) throws -> [UInt8]
    /// The same bytes as `read(_:_:offset:length:)`, held however the backend holds them
    /// best: the local one maps the file, so that reading a pack does not copy it.
    func view(_ kind: ObjectKind, _ name: String, offset: Int, length: Int) throws -> ObjectBytes
    func size(_ kind: ObjectKind, _ name: String) throws -> Int
    func exists(_ kind: ObjectKind, _ name: String) throws -> Bool
    func list(_ kind: ObjectKind) throws -> [String]
    /// Creates the object atomically and durably. Writing a name that exists replaces it
    /// only where names are content hashes (so the bytes are the same).
    func write(_ kind: ObjectKind, _ name: String, _ bytes: [UInt8]) throws
    func remove(_ kind: ObjectKind, _ name: String) throws
    /// What is at the top of the vault (object kinds, and anything else someone put there).
    func topLevelEntries() throws -> [String]
    /// Temporary objects left by writers that died; removable once no writer is running.
    func staleTemporaries() throws -> [String]
    /// Creates the object only if no object has that name; false when one exists. Used for
    /// the prune lock (docs/decisions/009), where two pruners must not both win.
    func createExclusive(_ kind: ObjectKind, _ name: String, _ bytes: [UInt8]) throws -> Bool
}

extension VaultBackend {
    public func view(_ kind: ObjectKind, _ name: String, offset: Int, length: Int) throws -> ObjectBytes {
        ObjectBytes(try read(kind, name, offset: offset, length: length))
    }

    /// For backends without an atomic create-if-absent: a check, then a write. Two pruners
    /// starting in the same instant could both win; backends that can do better override it
    /// (the local one links; object stores have If-None-Match).
    public func createExclusive(_ kind: ObjectKind, _ name: String, _ bytes: [UInt8]) throws -> Bool {
        if try exists(kind, name) { return false }
        try write(kind, name, bytes)
        return true
    }
}

/// Bytes of an object, read-only: an array of them, or a mapping of the file that holds them
/// (unmapped when this goes). Sendable: nothing ever writes them.
public final class ObjectBytes: @unchecked Sendable {
    private let array: [UInt8]?
    private let mapping: (base: UnsafeMutableRawPointer, length: Int, skip: Int)?
    public let count: Int

    public init(_ bytes: [UInt8]) {
        array = bytes
        mapping = nil
        count = bytes.count
    }

    /// `length` bytes from `skip` into a mapping of `mappedLength` bytes at `base`, which
    /// this now owns.
    init(mapped base: UnsafeMutableRawPointer, mappedLength: Int, skip: Int, length: Int) {
        array = nil
        mapping = (base, mappedLength, skip)
        count = length
    }

    deinit {
        if let mapping { munmap(mapping.base, mapping.length) }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let mapping { return try body(UnsafeRawBufferPointer(start: mapping.base + mapping.skip, count: count)) }
        return try array!.withUnsafeBytes(body)
    }
}
