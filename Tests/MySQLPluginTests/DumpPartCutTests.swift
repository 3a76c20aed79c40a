@testable import coffer_mysql
import CofferFixtures
import XCTest

final class DumpPartCutTests: XCTestCase {
    /// Where a dump's parts end depends on the rows, not on how long the part has grown
    /// (decision 019, amended): a change that makes the first statement 1 MiB longer leaves
    /// every later cut on the statement it was on. With an 8 MiB minimum, the part that
    /// reached it earlier could end one statement sooner, and every cut after it moved.
    func testALongerStatementMovesNoLaterCut() {
        var gen = TestBytes(seed: 19)
        func cuts(_ sizes: [Int], _ sums: [UInt32]) -> [Int] {
            var length = 0
            var out: [Int] = []
            for i in sizes.indices {
                length += sizes[i]
                if DumpFormat.endsPart(length: length, lastRowChecksum: { sums[i] }) {
                    out.append(i)
                    length = 0
                }
            }
            return out
        }
        for _ in 0 ..< 100 {
            // 200 statements of 768 KiB to ~1.8 MiB (DumpFormat.endsStatement's range), each
            // with its last row's CRC.
            let bytes = gen.bytes(200 * 5)
            let sizes = (0 ..< 200).map { (768 << 10) + Int(bytes[$0 * 5]) << 12 }
            let sums = (0 ..< 200).map { i in bytes[(i * 5 + 1) ..< (i * 5 + 5)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
            var longer = sizes
            longer[0] += 1 << 20
            let before = cuts(sizes, sums)
            XCTAssertGreaterThan(before.count, 10, "about one statement in eight ends a part")
            XCTAssertEqual(cuts(longer, sums).filter { $0 > 0 }, before.filter { $0 > 0 })
        }
    }
}
