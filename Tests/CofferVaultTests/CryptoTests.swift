@testable import CofferVault
import CofferFixtures
import CZstd
import XCTest

final class CryptoTests: XCTestCase {
    func testHMACMatchesRFC4231() {
        // RFC 4231 test case 2.
        let mac = HMACSHA256(key: Array("Jefe".utf8)).mac(Array("what do ya want for nothing?".utf8))
        XCTAssertEqual(Hex.encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // Test case 6: a key longer than the block size.
        let long = HMACSHA256(key: [UInt8](repeating: 0xaa, count: 131))
            .mac(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        XCTAssertEqual(Hex.encode(long), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        // The prefix form equals the MAC of the concatenation.
        let h = HMACSHA256(key: [1, 2, 3])
        XCTAssertEqual(h.mac(prefix: [9], [4, 5]), h.mac([9, 4, 5]))
    }

    func testScryptMatchesRFC7914() throws {
        let key = try ScryptParameters(n: 1024, r: 8, p: 16).deriveKey(passphrase: Array("password".utf8), salt: Array("NaCl".utf8))
        XCTAssertEqual(Hex.encode(key), "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162")
    }

    func testAESGCMRoundTripAndTamper() {
        let key = [UInt8](repeating: 7, count: 32)
        let plain = Array("attack at dawn".utf8)
        let sealed = AESGCM.seal(key: key, aad: [1, 2], plain)
        XCTAssertEqual(sealed.count, plain.count + AESGCM.overhead)
        XCTAssertEqual(AESGCM.open(key: key, aad: [1, 2], sealed), plain)
        XCTAssertNil(AESGCM.open(key: key, aad: [1, 3], sealed), "other associated data must not open")
        for i in [0, 12, sealed.count - 1] {
            var bad = sealed
            bad[i] ^= 0x01
            XCTAssertNil(AESGCM.open(key: key, aad: [1, 2], bad), "flipped byte \(i) must not open")
        }
        var wrongKey = key
        wrongKey[0] ^= 1
        XCTAssertNil(AESGCM.open(key: wrongKey, aad: [1, 2], sealed))
        XCTAssertNotEqual(AESGCM.seal(key: key, aad: [], plain), AESGCM.seal(key: key, aad: [], plain), "nonces must differ")
    }

    func testZstdShrinksTextAndRefusesNoise() throws {
        let zstd = Zstd(level: 3)
        let text = Array(String(repeating: "SELECT * FROM accounts WHERE id = 42;\n", count: 1000).utf8)
        let compressed = try XCTUnwrap(text.withUnsafeBytes { zstd.compress($0) })
        XCTAssertLessThan(compressed.count, text.count / 10)
        XCTAssertEqual(compressed.withUnsafeBytes { Zstd.decompress($0, rawLength: text.count) }, text)
        var gen = TestBytes(seed: 5)
        let noise = gen.bytes(100_000)
        XCTAssertNil(noise.withUnsafeBytes { zstd.compress($0) }, "incompressible input is stored raw")
    }

    func testZstdSmallInputsGetTheLargerHashTable() throws {
        // Pieces of up to 64 KiB at levels 1-2 are compressed with 2^17 hash entries: a block of
        // words drawn from a few thousand comes out as from a context set to 2^17 by hand, not
        // as from zstd's own choice for that size, which keeps fewer of the repeats (decision
        // 021: 2^12 stored such data a third larger). Counts only in the messages.
        var wordGen = TestBytes(seed: 12)
        let words = (0 ..< 4000).map { _ in Array(Data(wordGen.bytes(6)).base64EncodedData()) + [0x20] }
        let picks = wordGen.bytes(2 * 8_000)
        var block: [UInt8] = []
        for i in 0 ..< 8_000 where block.count < Zstd.smallInput {
            block += words[(Int(picks[2 * i]) << 8 | Int(picks[2 * i + 1])) % words.count]
        }
        block = Array(block.prefix(Zstd.smallInput))
        func reference(hashLog: Int32?) -> [UInt8] {
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
        let large = reference(hashLog: Zstd.smallHashLog), zstdsOwn = reference(hashLog: nil)
        XCTAssertTrue(large != zstdsOwn, "the block must tell the two tables apart (\(large.count) and \(zstdsOwn.count) bytes)")
        let zstd = Zstd(level: 1)
        for _ in 0 ..< 2 {  // a fresh context, then the pooled one
            let ours = try XCTUnwrap(block.withUnsafeBytes { zstd.compress($0) })
            XCTAssertTrue(ours == large, "Zstd compressed the block to \(ours.count) bytes, a 2^17 table to \(large.count)")
            XCTAssertEqual(ours.withUnsafeBytes { Zstd.decompress($0, rawLength: block.count) }, block)
        }
    }

    func testStreamingSHA256MatchesOneShot() {
        var gen = TestBytes(seed: 3)
        let data = gen.bytes(1_000_003)
        let s = StreamingSHA256()
        data.withUnsafeBytes { raw in
            s.update(UnsafeRawBufferPointer(rebasing: raw[0..<1000]))
            s.update(UnsafeRawBufferPointer(rebasing: raw[1000...]))
        }
        XCTAssertEqual(s.finish(), SHA256.hash(data))
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
