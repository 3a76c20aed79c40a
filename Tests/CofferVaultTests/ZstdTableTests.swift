@testable import CofferVault
import CofferFixtures
import CZstd
import Foundation
import XCTest

/// The hash tables of small inputs at levels 1-2 (decisions 021 and 024).
final class ZstdTableTests: XCTestCase {
    /// 64 KiB of words drawn from a few thousand: the data the large table is for (with 2^12
    /// entries it stores a third larger).
    static func vocabularyBlock(seed: UInt64) -> [UInt8] {
        var gen = TestBytes(seed: 12)
        let words = (0 ..< 4000).map { _ in Array(Data(gen.bytes(6)).base64EncodedData()) + [0x20] }
        var picks = TestBytes(seed: seed)
        var block: [UInt8] = []
        while block.count < Zstd.smallInput {
            let pick = picks.bytes(2)
            block += words[(Int(pick[0]) << 8 | Int(pick[1])) % words.count]
        }
        return Array(block.prefix(Zstd.smallInput))
    }

    /// 64 KiB of base64 of random bytes, like the benchmark's random_text: no repeats that
    /// a larger table would find.
    static func base64Block(seed: UInt64) -> [UInt8] {
        var gen = TestBytes(seed: seed)
        return Array(Data(gen.bytes(Zstd.smallInput * 3 / 4)).base64EncodedData())
    }

    /// The block compressed at level 1 by a context of its own with the given hash table.
    static func reference(_ block: [UInt8], hashLog: Int32?) -> [UInt8] {
        let context = ZSTD_createCCtx()!
        defer { ZSTD_freeCCtx(context) }
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, 1)
        if let hashLog { ZSTD_CCtx_setParameter(context, ZSTD_c_hashLog, hashLog) }
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(block.count))
        let n = out.withUnsafeMutableBytes { o in
            block.withUnsafeBytes { ZSTD_compress2(context, o.baseAddress, o.count, $0.baseAddress, $0.count) }
        }
        return Array(out[0 ..< n])
    }

    func compress(_ block: [UInt8], _ zstd: Zstd, _ tables: Zstd.TableChoice?) throws -> [UInt8] {
        var out: [UInt8] = []
        let n = try XCTUnwrap(block.withUnsafeBytes { zstd.compress($0, into: &out, tables: tables) })
        let compressed = Array(out[0 ..< n])
        XCTAssertEqual(compressed.withUnsafeBytes { Zstd.decompress($0, rawLength: block.count) }, block)
        return compressed
    }

    func testWithoutAChoiceSmallInputsGetTheLargeTable() throws {
        // A block of vocabulary words comes out as from a context set to 2^17 by hand, not as
        // from zstd's own choice for that size, which keeps fewer of the repeats.
        let block = Self.vocabularyBlock(seed: 1)
        let large = Self.reference(block, hashLog: Zstd.largeHashLog), zstdsOwn = Self.reference(block, hashLog: nil)
        XCTAssertTrue(large != zstdsOwn, "the block must tell the two tables apart (\(large.count) and \(zstdsOwn.count) bytes)")
        let zstd = Zstd(level: 1)
        for _ in 0 ..< 2 {  // a fresh context, then the pooled one
            let ours = try compress(block, zstd, nil)
            XCTAssertTrue(ours == large, "Zstd compressed the block to \(ours.count) bytes, a 2^17 table to \(large.count)")
        }
    }

    func testAStreamOfVocabularyTextKeepsTheLargeTable() throws {
        let zstd = Zstd(level: 1), tables = Zstd.TableChoice()
        for seed in 1 ... 40 {
            let block = Self.vocabularyBlock(seed: UInt64(seed))
            let large = Self.reference(block, hashLog: Zstd.largeHashLog)
            let cached = Self.reference(block, hashLog: Zstd.cachedHashLog)
            XCTAssertGreaterThan(cached.count, large.count + large.count / 10, "block \(seed) must need the large table")
            let ours = try compress(block, zstd, tables)
            XCTAssertTrue(ours == large, "block \(seed): \(ours.count) bytes, with the large table \(large.count)")
        }
        let state = tables.current
        XCTAssertFalse(state.cached)
        XCTAssertGreaterThanOrEqual(state.trials, 2)
    }

    func testAStreamWithoutRepeatsTakesTheCachedTableAndTrialsGrowRare() throws {
        let zstd = Zstd(level: 1), tables = Zstd.TableChoice()
        var ours = 0, large = 0
        let blocks = 300
        for seed in 1 ... blocks {
            let block = Self.base64Block(seed: UInt64(seed))
            let largeOut = Self.reference(block, hashLog: Zstd.largeHashLog)
            let cachedOut = Self.reference(block, hashLog: Zstd.cachedHashLog)
            let out = try compress(block, zstd, tables)
            ours += out.count
            large += largeOut.count
            if seed == 1 {
                // The first block is a trial (both tables), and keeps the smaller output.
                XCTAssertEqual(out.count, min(cachedOut.count, largeOut.count))
            } else {
                XCTAssertTrue(out == cachedOut || out.count == min(cachedOut.count, largeOut.count),
                              "block \(seed) is compressed with the cached table, or tried with both")
            }
        }
        let state = tables.current
        XCTAssertTrue(state.cached)
        // Trials after 1, 8, 16, 32, 64, 128 blocks: every blocks-th would be 300.
        XCTAssertLessThanOrEqual(state.trials, 6, "trials must grow rare while their answer stays the same")
        XCTAssertGreaterThanOrEqual(state.trials, 5)
        XCTAssertLessThanOrEqual(ours, large + large / 100, "the cached table stores such a stream within 1% of the large one")
    }

    func testAStreamWhoseDataChangeKindFollowsThem() throws {
        let zstd = Zstd(level: 1), tables = Zstd.TableChoice()
        for seed in 1 ... 300 { _ = try compress(Self.base64Block(seed: UInt64(seed)), zstd, tables) }
        XCTAssertTrue(tables.current.cached)
        // Vocabulary text from here: the next trial, at most the longest interval away, turns
        // the stream to the large table, and every block after it gets that table.
        var switchedAfter: Int?
        for seed in 1 ... Zstd.TableChoice.longestInterval + 40 {
            let block = Self.vocabularyBlock(seed: UInt64(seed))
            let ours = try compress(block, zstd, tables)
            if switchedAfter != nil {
                XCTAssertTrue(ours == Self.reference(block, hashLog: Zstd.largeHashLog), "block \(seed) after the switch")
            } else if !tables.current.cached {
                switchedAfter = seed
            }
        }
        let after = try XCTUnwrap(switchedAfter, "the stream never left the cached table")
        XCTAssertLessThanOrEqual(after, Zstd.TableChoice.longestInterval + 1)
    }

    func testBackupSessionsChooseTablesPerStream() throws {
        // Through a session: a stream without repeats is stored mostly with the cached table,
        // one of vocabulary text with the large one.
        let scratch = try ScratchVault()
        let session = try BackupSession(vault: scratch.vault, compressionLevel: 1)
        let text = (1 ... 64).flatMap { Self.base64Block(seed: UInt64($0)) }
        _ = try session.store(name: "text", chunker: .fixed(Zstd.smallInput), bytes: text)
        let afterText = session.zstd!.uses
        XCTAssertGreaterThan(afterText.cached, afterText.large * 4, "blocks of the text stream: \(afterText)")
        let words = (1 ... 64).flatMap { Self.vocabularyBlock(seed: UInt64($0)) }
        _ = try session.store(name: "words", chunker: .fixed(Zstd.smallInput), bytes: words)
        let afterWords = session.zstd!.uses
        XCTAssertGreaterThan(afterWords.large - afterText.large, (afterWords.cached - afterText.cached) * 4,
                             "blocks of the vocabulary stream: \(afterWords) after \(afterText)")
    }
}
