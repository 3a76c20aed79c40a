@testable import CofferVault
import CofferFixtures
import Synchronization
import XCTest

/// Streams whose producer lends its memory (`submit(lend:)`, decision 024).
final class LentBytesTests: XCTestCase {
    /// Pieces of a buffer, each kept valid by an owner that counts how many are alive.
    final class Lender: @unchecked Sendable {
        final class Owner {
            let lender: Lender
            init(_ lender: Lender) {
                self.lender = lender
                lender.count { $0 += 1 }
            }
            deinit { lender.count { $0 -= 1 } }
        }

        /// The bytes, in memory of their own: valid while any piece (whose owner holds the
        /// lender) is out.
        let memory: UnsafeMutableRawBufferPointer
        let pieces: [Int]
        private var offset = 0, index = 0
        private let alive = Mutex((now: 0, most: 0))

        init(bytes: [UInt8], pieces: [Int]) {
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
            bytes.withUnsafeBytes { memory.copyMemory(from: $0) }
            self.memory = memory
            self.pieces = pieces
        }

        deinit { memory.deallocate() }

        func count(_ change: (inout Int) -> Void) {
            alive.withLock {
                change(&$0.now)
                $0.most = max($0.most, $0.now)
            }
        }

        var aliveNow: Int { alive.withLock { $0.now } }
        var mostAlive: Int { alive.withLock { $0.most } }

        /// The next piece, its sizes taking turns; nil at the end.
        func next() -> LentBytes? {
            guard offset < memory.count else { return nil }
            let n = min(pieces[index % pieces.count], memory.count - offset)
            index += 1
            defer { offset += n }
            return LentBytes(bytes: UnsafeRawBufferPointer(rebasing: memory[offset ..< offset + n]), owner: Owner(self))
        }
    }

    func store(_ bytes: [UInt8], pieces: [Int], chunker: ChunkerSpec) throws -> (Artifact, Artifact, BackupSession.Stats, Lender) {
        let scratch = try ScratchVault()
        let session = try BackupSession(vault: scratch.vault, compressionLevel: 1, workers: 2)
        let lender = Lender(bytes: bytes, pieces: pieces)
        let lent = try session.submit(name: "lent", chunker: chunker, lend: lender.next).finish()
        let stats = session.statistics
        let read = try session.store(name: "read", chunker: chunker, bytes: bytes)
        _ = try session.commit(session.manifest(source: "t", artifacts: [lent, read]))
        var back: [UInt8] = []
        try ArtifactReader(vault: try scratch.reopen()).read(lent) { back.append(contentsOf: $0) }
        XCTAssertTrue(back == bytes, "the lent stream reads back as it was")
        return (lent, read, stats, lender)
    }

    func testChunksLyingInOnePieceAreStoredUncopiedAndPiecesGoBack() throws {
        var gen = TestBytes(seed: 41)
        let bytes = gen.bytes(40 << 20 | 12_345)
        let (lent, read, stats, lender) = try store(bytes, pieces: [1 << 20], chunker: .fixed(64 << 10))
        XCTAssertEqual(lent.blobs ?? lent.lists, read.blobs ?? read.lists, "the same chunks as when read")
        XCTAssertEqual(lent.size, Int64(bytes.count))
        // Every chunk but the last (12,345 bytes) lay whole in one piece.
        XCTAssertEqual(stats.lent, Int64(bytes.count - 12_345))
        XCTAssertEqual(lender.aliveNow, 0, "every piece goes back once its chunks are stored")
        // The batches in flight (2 workers x 4) and the piece being read.
        XCTAssertLessThanOrEqual(lender.mostAlive, 2 * 4 + 1)
        XCTAssertGreaterThan(lender.mostAlive, 1, "pieces are held while their chunks are stored")
    }

    func testChunksAcrossPiecesAreCopied() throws {
        var gen = TestBytes(seed: 42)
        let bytes = gen.bytes(9 << 20 | 777)
        // Pieces of odd sizes: some chunks lie in one piece, others straddle two or three.
        let (lent, read, stats, lender) = try store(bytes, pieces: [100_000, 7, 300_001, 65_536, 1 << 20], chunker: .fixed(64 << 10))
        XCTAssertEqual(lent.blobs ?? lent.lists, read.blobs ?? read.lists)
        XCTAssertGreaterThan(stats.lent, 0)
        XCTAssertLessThan(stats.lent, Int64(bytes.count))
        XCTAssertEqual(lender.aliveNow, 0)
        XCTAssertLessThanOrEqual(lender.mostAlive, 2 * 4 + 1)
    }

    func testContentDefinedAndWholeStreamsReadLentPieces() throws {
        var gen = TestBytes(seed: 43)
        let bytes = gen.bytes(5 << 20 | 99)
        for chunker in [ChunkerSpec.contentDefined, .whole] {
            let (lent, read, stats, lender) = try store(bytes, pieces: [1 << 20, 333_333], chunker: chunker)
            XCTAssertEqual(lent.blobs ?? lent.lists, read.blobs ?? read.lists, "\(chunker)")
            XCTAssertEqual(stats.lent, 0, "\(chunker) chunks are copied out of the pieces")
            XCTAssertEqual(lender.aliveNow, 0)
        }
    }
}
