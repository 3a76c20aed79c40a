import CSharedMemory
#if canImport(Glibc)
import Glibc
#endif

/// Memory the agent and a plugin share for data frames (docs/plugin-protocol.md, "Shared
/// memory"): `count` slots of 1 MiB in a memfd, and a socket on which a slot's number goes
/// back to the sender once the receiver is done with it.
///
/// Data crosses a pipe as two copies in the kernel, each with page allocation and pipe
/// locking, 1–1.5 CPU-seconds of a 3 GB backup (decision 017). Through a slot, the sender writes its bytes
/// once (a plugin reads a file straight into one) and the receiver reads them once; the pipe
/// carries only a `shared` frame naming the slot and the length.
///
/// Within one job data goes one way only (a plugin sends in a backup, the agent in a
/// restore), so the sender owns every slot at first and the receiver owns none.
/// One thread sends and one receives on each side, as with the frames themselves.
public final class SharedSlots: @unchecked Sendable {
    public static let slotSize = 1 << 20
    /// 16: a restore's reader opens blobs straight into slots ahead of sending them (decision
    /// 022); a cold restore of the benchmark's cluster took 0.4 CPU-seconds less than with 8.
    public static let defaultCount = 16
    /// Where a plugin finds them: the memfd and its end of the socket.
    public static let memoryDescriptor: Int32 = 3
    public static let socketDescriptor: Int32 = 4

    public let count: Int
    private let memory: UnsafeMutableRawBufferPointer
    private let socket: Int32
    /// Slots this side may fill: all of them at first, as only the sender ever fills one.
    private var free: [Int]
    /// How long a sender waits for a slot to come back before giving up (nil: as long as it takes).
    public var timeout: Double?

    private init(memory: UnsafeMutableRawBufferPointer, socket: Int32, count: Int) {
        self.memory = memory
        self.socket = socket
        self.count = count
        self.free = Array((0 ..< count).reversed())
    }

    deinit {
        munmap(memory.baseAddress, memory.count)
        close(socket)
    }

    /// The agent's side: new shared memory and socket. The plugin's ends (`memoryFD`,
    /// `peerSocket`, both close-on-exec and above 9) go to its descriptors 3 and 4; the
    /// caller closes them once the plugin is started.
    public static func create(count: Int = defaultCount) throws -> (slots: SharedSlots, memoryFD: Int32, peerSocket: Int32) {
        var fd = coffer_memfd_create("coffer-data")
        guard fd >= 0 else { throw ProtocolError.io("memfd_create: \(String(cString: strerror(errno)))") }
        fd = high(fd)
        var pair: [Int32] = [0, 0]
        guard ftruncate(fd, off_t(count * slotSize)) == 0,
              socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0
        else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw ProtocolError.io("shared memory: \(message)")
        }
        let peer = high(pair[1])
        do {
            let slots = try SharedSlots(mapping: fd, socket: pair[0], count: count)
            return (slots, fd, peer)
        } catch {
            close(fd)
            close(pair[0])
            close(peer)
            throw error
        }
    }

    /// The plugin's side: the memory on descriptor 3 and the socket on 4, as the agent's
    /// hello announced them. Takes both over (the memory's descriptor is closed once mapped).
    public static func attach(count: Int, memory: Int32 = memoryDescriptor, socket: Int32 = socketDescriptor) throws -> SharedSlots {
        var info = stat()
        guard count > 0, count <= 255, fstat(memory, &info) == 0, Int(info.st_size) == count * slotSize,
              fstat(socket, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK
        else { throw ProtocolError.malformed("the agent offered shared memory, but descriptors \(memory) and \(socket) are not it") }
        let slots = try SharedSlots(mapping: memory, socket: socket, count: count)
        close(memory)  // the mapping keeps the memory
        // Not for the plugin's own children (mariabackup, ...): one that outlived the plugin
        // would keep the agent from seeing the socket close.
        _ = fcntl(socket, F_SETFD, FD_CLOEXEC)
        return slots
    }

    private convenience init(mapping fd: Int32, socket: Int32, count: Int) throws {
        let size = count * SharedSlots.slotSize
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw ProtocolError.io("mmap of shared memory: \(String(cString: strerror(errno)))")
        }
        self.init(memory: UnsafeMutableRawBufferPointer(start: base, count: size), socket: socket, count: count)
    }

    /// A descriptor moved to 10 or above, close-on-exec: the plugin's 3 and 4 are made by
    /// dup2 from these, which must not be 3 or 4 themselves.
    private static func high(_ fd: Int32) -> Int32 {
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, 10)
        if moved >= 0 {
            close(fd)
            return moved
        }
        return fd
    }

    public func slot(_ i: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: memory[(i * SharedSlots.slotSize) ..< ((i + 1) * SharedSlots.slotSize)])
    }

    /// The sender: a slot to fill, waiting for the receiver to give one back if need be.
    public func acquire() throws -> Int {
        try acquire(waiting: true)!
    }

    /// The sender: a slot to fill if one is free or given back already, else nil at once.
    public func acquireIfFree() throws -> Int? {
        try acquire(waiting: false)
    }

    private func acquire(waiting: Bool) throws -> Int? {
        while free.isEmpty {
            if !waiting {
                var pfd = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                let r = poll(&pfd, 1, 0)
                if r < 0 && errno == EINTR { continue }
                // Nothing given back yet, or poll failed: either way no slot now, and never a
                // read that could wait.
                if r <= 0 { return nil }
            }
            try pollReadable(socket, timeout: waiting ? timeout : nil)
            var numbers = [UInt8](repeating: 0, count: count)
            let n = numbers.withUnsafeMutableBytes { read(socket, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ProtocolError.io("read from the shared-memory socket: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw ProtocolError.closed }
            for number in numbers[0 ..< n] {
                guard Int(number) < count else { throw ProtocolError.malformed("slot \(number) given back, of \(count)") }
                free.append(Int(number))
            }
        }
        return free.removeLast()
    }

    /// The sender: a slot it acquired but did not send after all.
    public func putBack(_ slot: Int) { free.append(slot) }

    /// The receiver: done with `slot`, which the sender may fill again.
    public func release(_ slot: Int) throws {
        var number = UInt8(slot)
        while true {
            let n = write(socket, &number, 1)
            if n == 1 { return }
            if n < 0 && errno == EINTR { continue }
            // A sender that is gone needs no slot back; the frames it sent before it went
            // (an error message, say) are still to be read, and the pipe's end says the rest.
            if errno == EPIPE || errno == ECONNRESET { return }
            throw ProtocolError.io("write to the shared-memory socket: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: - the frame naming a slot

    /// A `shared` frame's payload: the slot and the length, little-endian u32 each.
    static func payload(slot: Int, length: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 8)
        out.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt32(slot).littleEndian, toByteOffset: 0, as: UInt32.self)
            $0.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 4, as: UInt32.self)
        }
        return out
    }

    /// The slot and length a `shared` frame names, checked against this memory.
    func parse(_ payload: [UInt8]) throws -> (slot: Int, length: Int) {
        guard payload.count == 8 else { throw ProtocolError.malformed("a shared frame of \(payload.count) bytes, not 8") }
        let (slot, length) = payload.withUnsafeBytes {
            (Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt32.self))),
             Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self))))
        }
        guard slot < count, length <= SharedSlots.slotSize else {
            throw ProtocolError.malformed("a shared frame names slot \(slot) and \(length) bytes (\(count) slots of \(SharedSlots.slotSize))")
        }
        return (slot, length)
    }
}

/// The bytes of one data frame as its receiver got them: in a slot of shared memory, which
/// goes back to the sender when the piece goes away, or in an array of its own.
///
/// Keep a piece only as long as it takes to write it out, never while waiting for later
/// ones: the sender has only so many slots (16 MiB), and with all of them held it cannot send
/// more (it fails after its timeout). Copy what must stay longer. (The agent's backup keeps
/// a piece until the blocks cut from it are stored, at most one a batch in flight: worker
/// threads finish those without waiting on the sender.)
public final class DataPiece: @unchecked Sendable {
    private enum Storage {
        case array([UInt8])
        case slot(SharedSlots, number: Int, count: Int)
    }

    private let storage: Storage

    init(_ array: [UInt8]) { storage = .array(array) }

    init(slot number: Int, of memory: SharedSlots, count: Int) { storage = .slot(memory, number: number, count: count) }

    deinit {
        if case .slot(let memory, let number, _) = storage { try? memory.release(number) }
    }

    public var count: Int {
        switch storage {
        case .array(let bytes): return bytes.count
        case .slot(_, _, let count): return count
        }
    }

    /// The bytes in their slot of shared memory, valid for as long as this piece lives (the
    /// slot goes back to the sender only when the piece goes); nil for a piece held in an
    /// array, whose bytes `withUnsafeBytes` gives.
    public var sharedBytes: UnsafeRawBufferPointer? {
        guard case .slot(let memory, let number, let count) = storage else { return nil }
        return UnsafeRawBufferPointer(rebasing: memory.slot(number)[0 ..< count])
    }

    /// The bytes, valid during `body` only.
    public func withUnsafeBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        switch storage {
        case .array(let bytes): return try bytes.withUnsafeBytes(body)
        case .slot(let memory, let number, let count): return try body(UnsafeRawBufferPointer(rebasing: memory.slot(number)[0 ..< count]))
        }
    }
}
