@testable import CofferVault
import CofferFixtures
import XCTest

final class ChunkerTests: XCTestCase {
    let params = ChunkerParameters(min: 16 << 10, avg: 64 << 10, max: 256 << 10)
    let seed = [UInt8](repeating: 42, count: 32)

    func chunks(_ data: [UInt8], spec: ChunkerSpec = .contentDefined, readSize: Int = 1 << 20, seed: [UInt8]? = nil) throws -> [Int] {
        var offset = 0
        var chunker = StreamChunker(spec: spec, cdc: FastCDC(parameters: params, seed: seed ?? self.seed)) { buf in
            let n = min(buf.count, readSize, data.count - offset)
            data.withUnsafeBytes { buf.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            return n
        }
        var sizes: [Int] = []
        var rebuilt: [UInt8] = []
        while let c = try chunker.next() {
            sizes.append(c.count)
            rebuilt += c
        }
        XCTAssertEqual(rebuilt, data, "chunks must concatenate to the input")
        return sizes
    }

    func testCutsAreBoundedAndIndependentOfReadSizes() throws {
        var gen = TestBytes(seed: 11)
        let data = gen.bytes(8 << 20)
        let big = try chunks(data)
        XCTAssertEqual(try chunks(data, readSize: 4093), big, "cut points must not depend on how the stream was read")
        for size in big.dropLast() {
            XCTAssertGreaterThanOrEqual(size, params.min)
            XCTAssertLessThanOrEqual(size, params.max)
        }
        let mean = Double(data.count) / Double(big.count)
        XCTAssert(mean > Double(params.avg) * 0.6 && mean < Double(params.avg) * 1.6, "mean chunk \(mean) far from avg")
    }

    func testInsertionChangesOnlyNearbyChunks() throws {
        var gen = TestBytes(seed: 12)
        let data = gen.bytes(8 << 20)
        var edited = data
        edited.insert(contentsOf: gen.bytes(100), at: 1 << 20)
        func cutSet(_ d: [UInt8]) throws -> Set<[UInt8]> {
            var set = Set<[UInt8]>()
            var offset = 0
            for size in try chunks(d) {
                set.insert(SHA256.hash(Array(d[offset..<(offset + size)])))
                offset += size
            }
            return set
        }
        let a = try cutSet(data)
        let b = try cutSet(edited)
        XCTAssertLessThanOrEqual(b.subtracting(a).count, 3, "an insertion must only change the chunks around it")
    }

    func testGearTableIsKeyed() throws {
        var gen = TestBytes(seed: 13)
        let data = gen.bytes(4 << 20)
        XCTAssertNotEqual(try chunks(data), try chunks(data, seed: [UInt8](repeating: 43, count: 32)))
    }

    func testFixedAndWhole() throws {
        var gen = TestBytes(seed: 14)
        let data = gen.bytes(100_000)
        XCTAssertEqual(try chunks(data, spec: .fixed(8192)), Array(repeating: 8192, count: 12) + [100_000 - 12 * 8192])
        XCTAssertEqual(try chunks(data, spec: .whole), [100_000])
        XCTAssertEqual(try chunks([], spec: .contentDefined), [])
    }

    func testChunkerSpecParsing() throws {
        XCTAssertEqual(try ChunkerSpec(parsing: "fixed:8K"), .fixed(8192))
        XCTAssertEqual(try ChunkerSpec(parsing: "cdc"), .contentDefined)
        XCTAssertEqual(try ChunkerSpec(parsing: "whole"), .whole)
        XCTAssertThrowsError(try ChunkerSpec(parsing: "fixed:0"))
        XCTAssertThrowsError(try ChunkerSpec(parsing: "rabin"))
    }
}

extension ChunkerTests {
    func testUnrolledCutEqualsReferenceLoop() {
        var gen = TestBytes(seed: 15)
        let cdc = FastCDC(parameters: params, seed: seed)
        let data = gen.bytes(16 << 20)
        data.withUnsafeBufferPointer { buf in
            var offset = 0
            var cuts = 0
            while offset < buf.count {
                // Odd and even window sizes exercise both tails of the two-byte loop.
                let window = UnsafeBufferPointer(rebasing: buf[offset..<min(offset + params.max + (cuts % 2), buf.count)])
                let cut = cdc.cut(window)
                XCTAssertEqual(cut, cdc.referenceCut(window), "at offset \(offset)")
                offset += cut
                cuts += 1
            }
            XCTAssertGreaterThan(cuts, 100)
        }
    }
}
