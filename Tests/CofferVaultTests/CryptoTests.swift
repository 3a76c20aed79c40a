@testable import CofferVault
import CofferFixtures
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
