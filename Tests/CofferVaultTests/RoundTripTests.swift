@testable import CofferVault
import CofferFixtures
import XCTest

final class RoundTripTests: XCTestCase {
    func testSmallStreamsAllChunkers() throws {
        let scratch = try ScratchVault()
        var gen = TestBytes(seed: 21)
        for size in [0, 1, 63, 4096, (1 << 20) - 1, 1 << 20, (5 << 20) + 3] {
            let data = gen.bytes(size)
            for spec in [ChunkerSpec.contentDefined, .fixed(8192), .whole] {
                let id = try scratch.put(data, chunker: spec)
                XCTAssertEqual(try scratch.get(id), data, "size \(size) with \(spec)")
            }
        }
    }

    func testCompressibleDataIsStoredCompressed() throws {
        let scratch = try ScratchVault()
        let text = Array(String(repeating: "INSERT INTO t VALUES (1, 'row of text that repeats');\n", count: 200_000).utf8)
        let before = scratch.diskBytes
        let id = try scratch.put(text)
        XCTAssertLessThan(scratch.diskBytes - before, Int64(text.count / 10))
        XCTAssertEqual(try scratch.get(id), text)
    }

    /// More chunks than fit inline: the id list goes into list blobs.
    func testLargeArtifactUsesListBlobs() throws {
        let scratch = try ScratchVault()
        var gen = TestBytes(seed: 22)
        let data = gen.bytes(Artifact.inlineLimit * 512 + 777)
        let id = try scratch.put(data, chunker: .fixed(512))
        let manifest = try scratch.vault.readManifest(id: id)
        XCTAssertNil(manifest.artifacts[0].blobs)
        XCTAssertEqual(manifest.artifacts[0].lists?.ids.count, 1)
        XCTAssertEqual(try scratch.reopen().readManifest(id: id), manifest)
        XCTAssertEqual(try scratch.get(id), data)
    }

    /// 1 GiB through the whole pipeline and back, compared by SHA-256 (never held in memory).
    func testOneGiBRoundTrip() throws {
        let scratch = try ScratchVault()
        let size = 1 << 30
        let source = GeneratedSource(seed: 23, size: size)
        let session = try BackupSession(vault: scratch.vault)
        let artifact = try session.store(name: "big", chunker: .contentDefined, read: source.read)
        let id = try session.commit(session.manifest(source: "big", artifacts: [artifact]))
        XCTAssertEqual(artifact.size, Int64(size))

        let vault = try scratch.reopen()
        let manifest = try vault.readManifest(id: id)
        let out = StreamingSHA256()
        var total = 0
        try ArtifactReader(vault: vault).read(manifest.artifacts[0]) { chunk in
            out.update(chunk)
            total += chunk.count
        }
        XCTAssertEqual(total, size)
        XCTAssertEqual(out.finish(), source.digest)
    }

    func testIndexIsReloadedAcrossSessions() throws {
        let scratch = try ScratchVault()
        var gen = TestBytes(seed: 24)
        let data = gen.bytes(6 << 20)
        try scratch.put(data)
        let reopened = try scratch.reopen()
        let session = try BackupSession(vault: reopened)
        _ = try session.store(name: "again", chunker: .contentDefined, bytes: data)
        XCTAssertEqual(session.statistics.newBlobs, 0, "a new session must dedupe against the stored index")
        XCTAssertGreaterThan(session.statistics.reusedBlobs, 0)
    }

    func testBackupListingAndPrefixes() throws {
        let scratch = try ScratchVault()
        let a = try scratch.put([1, 2, 3], source: "alpha")
        let b = try scratch.put([4, 5, 6], source: "beta")
        XCTAssertEqual(try scratch.vault.backups().map(\.id).sorted(), [a, b].sorted())
        XCTAssertEqual(try scratch.vault.backups(source: "beta").map(\.id), [b])
        XCTAssertEqual(try scratch.vault.resolveBackup(String(a.prefix(10))), a)
        XCTAssertThrowsError(try scratch.vault.resolveBackup("zzzzzz")) { XCTAssertEqual($0 as? VaultError, .backupNotFound("zzzzzz")) }
    }
}

final class DedupeTests: XCTestCase {
    static let size = 256 << 20

    func testSameStreamTwiceGrowsUnderOnePercent() throws {
        let scratch = try ScratchVault()
        var gen = TestBytes(seed: 31)
        let data = gen.bytes(DedupeTests.size)
        try scratch.put(data)
        let before = scratch.diskBytes
        try scratch.put(data)
        let growth = Double(scratch.diskBytes - before) / Double(before)
        XCTAssertLessThan(growth, 0.01, "growth \(growth)")
    }

    func testShiftedStreamGrowsUnderFivePercent() throws {
        let scratch = try ScratchVault()
        var gen = TestBytes(seed: 32)
        let data = gen.bytes(DedupeTests.size)
        try scratch.put(data)
        let before = scratch.diskBytes
        var edited = data
        edited.removeSubrange((DedupeTests.size - (1 << 20))..<(DedupeTests.size - (1 << 20) + 100))
        edited.insert(contentsOf: gen.bytes(100), at: 1 << 20)
        let id = try scratch.put(edited)
        let growth = Double(scratch.diskBytes - before) / Double(before)
        XCTAssertLessThan(growth, 0.05, "growth \(growth)")
        XCTAssertEqual(try scratch.get(id), edited)
    }
}

final class ConcurrentWriterTests: XCTestCase {
    /// Two writers (separate opens, as two agents would be) storing overlapping streams at
    /// once need no lock: both backups restore and the vault checks clean.
    func testTwoWritersAtOnce() throws {
        let scratch = try ScratchVault()
        var gen = TestBytes(seed: 41)
        let shared = gen.bytes(24 << 20)
        let a = shared + gen.bytes(8 << 20)
        let b = gen.bytes(8 << 20) + shared
        let vaults = [try scratch.reopen(), try scratch.reopen()]
        let ids = UnsafeIDs()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            ids.set(i, Result {
                let session = try BackupSession(vault: vaults[i])
                let artifact = try session.store(name: "data", chunker: .contentDefined, bytes: i == 0 ? a : b)
                return try session.commit(session.manifest(source: "w\(i)", artifacts: [artifact]))
            })
        }
        let reader = try scratch.reopen()
        for (i, expected) in [a, b].enumerated() {
            let manifest = try reader.readManifest(id: try ids.get(i).get())
            var out: [UInt8] = []
            try ArtifactReader(vault: reader).read(manifest.artifacts[0]) { out.append(contentsOf: $0) }
            XCTAssertEqual(out, expected, "writer \(i)")
        }
        let report = try VaultChecker(vault: reader).run(readData: true)
        XCTAssertTrue(report.ok, "\(report.problems)")
    }
}

private final class UnsafeIDs: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Int: Result<String, Error>] = [:]
    func set(_ i: Int, _ r: Result<String, Error>) { lock.withLock { results[i] = r } }
    func get(_ i: Int) -> Result<String, Error> { lock.withLock { results[i]! } }
}

final class FailingStreamTests: XCTestCase {
    struct ReadFailure: Error {}

    /// A stream that fails part-way fails the store, records nothing, and the session's
    /// threads and semaphores wind down cleanly (this used to trap in libdispatch).
    func testReadErrorFailsStoreCleanly() throws {
        let scratch = try ScratchVault()
        var gen = TestBytes(seed: 51)
        let data = gen.bytes(40 << 20)
        let session = try BackupSession(vault: scratch.vault)
        var served = 0
        XCTAssertThrowsError(try session.store(name: "x", chunker: .contentDefined) { buf in
            if served >= 30 << 20 { throw ReadFailure() }
            let n = min(buf.count, 1 << 20)
            data.withUnsafeBytes { buf.baseAddress!.copyMemory(from: $0.baseAddress! + served, byteCount: n) }
            served += n
            return n
        }) { XCTAssertTrue($0 is ReadFailure) }
        XCTAssertEqual(try LocalBackend(path: scratch.path).list(.manifests), [])

        // The same vault object again, with the same data: blobs the failed session had in
        // flight must not be taken as stored.
        let id = try scratch.put(data)
        XCTAssertEqual(try scratch.get(id), data)
        XCTAssertTrue(try VaultChecker(vault: try scratch.reopen()).run(readData: true).ok)
    }
}

/// Many streams in one session, each submitted while the previous ones' last batches are
/// still being stored, read back in one pass: the reader's runs (nearby blobs of one pack in
/// one read) must hand every blob back in order, repeated ones included.
final class ManyStreamsTests: XCTestCase {
    func testStreamsSubmittedWithoutWaitingReadBackInOrder() throws {
        let scratch = try ScratchVault(config: VaultConfig(packSize: 1 << 20, compressionLevel: 1))
        var gen = TestBytes(seed: 61)
        let page = gen.bytes(4096), other = gen.bytes(4096)
        var streams: [[UInt8]] = []
        for i in 0..<300 {
            switch i % 3 {
            case 0: streams.append(gen.bytes(Int.random(in: 0...20_000)))  // small files
            // Pages repeated within one stream and across streams: duplicates inside a batch.
            case 1:
                var bytes: [UInt8] = []
                for j in 0..<64 {
                    let chunk: [UInt8] = j % 3 == 0 ? other : j % 2 == 0 ? page : gen.bytes(4096)
                    bytes += chunk
                }
                streams.append(bytes)
            default: streams.append(gen.bytes(Int.random(in: 100_000...900_000)))
            }
        }
        let session = try BackupSession(vault: scratch.vault)
        var pending: [PendingArtifact] = []
        for (i, bytes) in streams.enumerated() {
            var offset = 0
            pending.append(try session.submit(name: "s\(i)", chunker: .fixed(4096)) { buf in
                let n = min(buf.count, bytes.count - offset)
                bytes.withUnsafeBytes { buf.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
                offset += n
                return n
            })
            XCTAssertEqual(pending[i].size, Int64(bytes.count))
        }
        let artifacts = try pending.map { try $0.finish() }
        let id = try session.commit(session.manifest(source: "many", artifacts: artifacts))
        XCTAssertGreaterThan(try LocalBackend(path: scratch.path).list(.packs).count, 10)

        let vault = try scratch.reopen()
        let manifest = try vault.readManifest(id: id)
        // Read twice: blob by blob, and with memory lent for batches (as a restore's agent
        // lends its shared slots), which must come back the same and every loan returned.
        for lender in [nil, TestLender(buffers: 6, size: 1 << 20)] {
            var got = [[UInt8]](repeating: [], count: streams.count)
            var current = -1
            try ArtifactReader(vault: vault).read(manifest.artifacts, into: lender) { piece in
                switch piece {
                case .begin(let a): current = a
                case .data(let plain): got[current].append(contentsOf: plain)
                case .lent(let loan, let count):
                    got[current].append(contentsOf: UnsafeRawBufferPointer(rebasing: loan.memory[0 ..< count]))
                    lender!.returned(loan)
                case .end(let a): XCTAssertEqual(a, current)
                }
            }
            for i in streams.indices { XCTAssertEqual(got[i], streams[i], "stream \(i), lent: \(lender != nil)") }
            if let lender {
                XCTAssertGreaterThan(lender.lent, 10, "batches opened into lent memory")
                XCTAssertEqual(lender.out, 0)
            }
        }
    }

    /// A damaged blob fails a read into lent memory too, and every loan not handed on comes
    /// back to the lender (the agent's slots would otherwise be lost to the next sender).
    func testDamagedBlobInLentMemoryFailsTheReadAndLoansComeBack() throws {
        // In the third batch of 16 blobs: the first six batches are lent at once, so the
        // failure comes with loans scheduled behind it.
        let stored = try StoredBlobs(seed: 64, bytes: 12 << 20, chunk: 64 << 10, packSize: 4 << 20, victim: { _ in 40 })
        try stored.flipByte(mask: 0x01)

        let lender = TestLender(buffers: 6, size: 1 << 20)
        var good = 0
        XCTAssertThrowsError(try ArtifactReader(vault: stored.vault).read(stored.manifest.artifacts, into: lender) { piece in
            if case .lent(let loan, let count) = piece {
                XCTAssertTrue(UnsafeRawBufferPointer(rebasing: loan.memory[0 ..< count]).elementsEqual(stored.data[good ..< good + count]))
                good += count
                lender.returned(loan)
            }
        }) { stored.assertNamesVictimPack($0) }
        XCTAssertGreaterThan(lender.lent, 1)
        XCTAssertLessThanOrEqual(good, Int(stored.victim.entry.rawLength) * 40)
        XCTAssertEqual(lender.out, 0, "loans not handed on are given back")
    }

    /// A damaged blob in the middle of a run fails the read and names its pack; the blobs
    /// read in the same request do not hide it.
    func testDamagedBlobInsideARunFailsTheRead() throws {
        let stored = try StoredBlobs(seed: 62, bytes: 256 << 10, chunk: 4096, packSize: 1 << 20, victim: { $0 / 2 })
        try stored.flipByte(mask: 0x40)
        XCTAssertThrowsError(try stored.scratch.get(stored.id)) { stored.assertNamesVictimPack($0) }
    }

    /// A pack cut short under a blob fails the read with the pack named. Restores map packs
    /// (LocalBackend.view): touching a mapping past the file's end would kill the process,
    /// so the size is checked first.
    func testTruncatedPackFailsTheRead() throws {
        let stored = try StoredBlobs(seed: 63, bytes: 256 << 10, chunk: 4096, packSize: 1 << 20, victim: { $0 / 2 })
        XCTAssertEqual(truncate(stored.packPath, off_t(stored.victim.entry.offset + stored.victim.entry.length / 2)), 0)
        XCTAssertThrowsError(try stored.scratch.get(stored.id)) { error in
            stored.assertNamesVictimPack(error)
            if case VaultError.corruptObject(_, _, let reason) = error { XCTAssertTrue(reason.contains("truncated"), reason) }
        }
    }
}

/// Random bytes stored in fixed chunks, the vault reopened, and one content blob picked to
/// be damaged: its pack made writable.
struct StoredBlobs {
    let scratch: ScratchVault
    let vault: Vault
    let id: String
    let manifest: Manifest
    let data: [UInt8]
    let victim: MasterIndex.Location
    let packPath: String

    init(seed: UInt64, bytes: Int, chunk: Int, packSize: Int, victim pick: (Int) -> Int) throws {
        scratch = try ScratchVault(config: VaultConfig(packSize: packSize, compressionLevel: 1))
        var gen = TestBytes(seed: seed)
        data = gen.bytes(bytes)
        id = try scratch.put(data, chunker: .fixed(chunk))
        vault = try scratch.reopen()
        manifest = try vault.readManifest(id: id)
        try vault.loadIndex()
        let ids = try ArtifactReader(vault: vault).contentIDs(manifest.artifacts[0])
        victim = vault.index.lookup(ids[pick(ids.count)])!
        packPath = "\(scratch.path)/packs/\(victim.pack.hex.prefix(2))/\(victim.pack.hex)"
        XCTAssertEqual(chmod(packPath, 0o644), 0)  // packs are read-only
    }

    /// Flips bits of the byte in the middle of the victim blob.
    func flipByte(mask: UInt8) throws {
        let fd = open(packPath, O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var byte: UInt8 = 0
        let at = off_t(victim.entry.offset + victim.entry.length / 2)
        XCTAssertEqual(pread(fd, &byte, 1, at), 1)
        byte ^= mask
        XCTAssertEqual(pwrite(fd, &byte, 1, at), 1)
    }

    func assertNamesVictimPack(_ error: Error, file: StaticString = #filePath, line: UInt = #line) {
        guard case VaultError.corruptObject(kind: .packs, let name, _) = error else {
            return XCTFail("expected a corrupt pack, got \(error)", file: file, line: line)
        }
        XCTAssertEqual(name, victim.pack.hex, file: file, line: line)
    }
}

/// Lends a reader a few buffers, as the agent lends shared slots, counting what is out.
final class TestLender: BatchMemory {
    private var free: [UnsafeMutableRawBufferPointer]
    private let all: [UnsafeMutableRawBufferPointer]
    private(set) var lent = 0
    private(set) var out = 0

    init(buffers: Int, size: Int) {
        all = (0 ..< buffers).map { _ in .allocate(byteCount: size, alignment: 16) }
        free = all
    }

    deinit { all.forEach { $0.deallocate() } }

    func borrow(_ bytes: Int) -> LentMemory? {
        guard let buffer = free.popLast(), bytes <= buffer.count else { return nil }
        lent += 1
        out += 1
        return LentMemory(token: all.firstIndex { $0.baseAddress == buffer.baseAddress }!, memory: buffer)
    }

    func returned(_ loan: LentMemory) {
        out -= 1
        free.append(all[loan.token])
    }

    func giveBack(_ loan: LentMemory) { returned(loan) }
}

final class PackBufferTests: XCTestCase {
    /// Every pack is built in a recycled buffer: each written pack's buffer comes back to
    /// the pool unshared, so emptying it keeps its pages (a copy of the builder once kept
    /// it shared, and every pack was built in fresh pages, faulted in and zeroed).
    func testWrittenPacksGiveTheirBuffersBackUnshared() throws {
        let scratch = try ScratchVault(config: VaultConfig(packSize: 1 << 20, compressionLevel: 1))
        var gen = TestBytes(seed: 81)
        let data = gen.bytes(12 << 20)
        let session = try BackupSession(vault: scratch.vault)
        let artifact = try session.store(name: "data", chunker: .fixed(64 << 10), bytes: data)
        let id = try session.commit(session.manifest(source: "test", artifacts: [artifact]))
        XCTAssertGreaterThanOrEqual(try LocalBackend(path: scratch.path).list(.packs).count, 10)
        XCTAssertEqual(session.packer.buffers.replacedOnReturn, 0, "pack buffers given back shared")
        XCTAssertEqual(try scratch.get(id), data)
    }
}
