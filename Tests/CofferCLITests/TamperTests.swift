import Foundation
import XCTest

/// Damage to the vault is reported by `vault check --read-data` and by `get`, naming the object.
final class TamperTests: XCTestCase {
    var coffer: CofferRunner!
    var data: [UInt8] = []
    var id = ""

    override func setUpWithError() throws {
        coffer = try CofferRunner()
        XCTAssertEqual(try coffer.run(["vault", "init", "--pack-size", "1M", "--chunk-size", "64K"]).status, 0)
        data = generated(6 << 20, seed: 3)
        id = try coffer.put(data)
        XCTAssertEqual(try coffer.run(["vault", "check", "--read-data"]).status, 0)
        XCTAssertGreaterThan(coffer.files("packs").count, 3)
    }

    override func tearDown() { coffer = nil }

    func assertReported(_ object: String, checkExit: Int32 = 14, getExits: Set<Int32> = [14, 15],
                        file: StaticString = #filePath, line: UInt = #line) throws {
        let name = (object as NSString).lastPathComponent
        let check = try coffer.run(["vault", "check", "--read-data"])
        XCTAssertEqual(check.status, checkExit, check.text + check.stderr, file: file, line: line)
        XCTAssertTrue(check.text.contains(name), "check must name \(name): \(check.text)", file: file, line: line)
        let get = try coffer.run(["get", id])
        XCTAssertTrue(getExits.contains(get.status), "get exited \(get.status): \(get.stderr)", file: file, line: line)
        XCTAssertTrue(get.stderr.contains(name), "get must name \(name): \(get.stderr)", file: file, line: line)
    }

    /// Flips bits of one byte of a file, chosen from its size.
    func flip(_ path: String, _ mask: UInt8, at offset: (Int) -> Int) throws {
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[offset(bytes.count)] ^= mask
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func testFlippedByteInPack() throws {
        let pack = coffer.files("packs")[1]
        try flip(pack, 0x40) { _ in 100 }   // inside the first blob, far from the header at the tail
        try assertReported(pack)
    }

    func testTruncatedPack() throws {
        let pack = coffer.files("packs")[2]
        let size = try FileManager.default.attributesOfItem(atPath: pack)[.size] as! Int
        let handle = FileHandle(forWritingAtPath: pack)!
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()
        try assertReported(pack)
    }

    func testDeletedPack() throws {
        let pack = coffer.files("packs")[0]
        try FileManager.default.removeItem(atPath: pack)
        try assertReported(pack)
    }

    func testEditedManifest() throws {
        let manifest = coffer.files("manifests")[0]
        try flip(manifest, 0x01) { $0 / 2 }
        try assertReported(manifest)
        let list = try coffer.run(["backups"])
        XCTAssertEqual(list.status, 14)
        XCTAssertTrue(list.stderr.contains((manifest as NSString).lastPathComponent), list.stderr)
    }

    func testEditedIndexFile() throws {
        let index = coffer.files("index")[0]
        try flip(index, 0x10) { $0 / 3 }
        try assertReported(index)
    }

    func testUndamagedVaultRestoresBitExact() throws {
        let get = try coffer.run(["get", String(id.prefix(8))])
        XCTAssertEqual(get.status, 0, get.stderr)
        XCTAssertEqual(Array(get.stdout), data)
    }
}
