@testable import coffer_mysql
import XCTest

final class DumpLineTests: XCTestCase {
    /// Quoting escapes exactly the bytes the lexer needs escaped (NUL, line ends, ^Z, quotes,
    /// backslash) and no other, for every byte value, random bytes and text, at many lengths.
    func testQuotingEscapesExactlyWhatTheLexerNeeds() {
        func reference(_ bytes: [UInt8], binary: Bool) -> [UInt8] {
            var out: [UInt8] = binary ? Array("_binary'".utf8) : [UInt8(ascii: "'")]
            for b in bytes {
                switch b {
                case 0: out += Array("\\0".utf8)
                case 10: out += Array("\\n".utf8)
                case 13: out += Array("\\r".utf8)
                case 26: out += Array("\\Z".utf8)
                case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), b]
                default: out.append(b)
                }
            }
            return out + [UInt8(ascii: "'")]
        }
        var rng = SystemRandomNumberGenerator()
        let text = Array(String(repeating: "plain words, and \"quotes\" 'too' \\ then more plain text; ", count: 8).utf8)
        var inputs: [[UInt8]] = [Array(0...255), Array((0...255).reversed()), text]
        for length in [0, 1, 15, 16, 17, 31, 32, 33, 100, 4099] {
            inputs.append((0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) })
            inputs.append(Array(text.prefix(length)))
        }
        for (n, input) in inputs.enumerated() {
            for binary in [false, true] {
                var line = DumpLine(capacity: 16)
                line.append(UInt8(ascii: "("))
                input.withUnsafeBytes { line.appendQuoted($0, binary: binary) }
                XCTAssertEqual(line.bytes, [UInt8(ascii: "(")] + reference(input, binary: binary), "input \(n), \(input.count) bytes")
            }
        }
    }
}
