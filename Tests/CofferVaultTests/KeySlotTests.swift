@testable import CofferVault
import XCTest

final class KeySlotTests: XCTestCase {
    func testWrongPassphraseAndSecondSlot() throws {
        let scratch = try ScratchVault()
        let backend = LocalBackend(path: scratch.path)
        XCTAssertThrowsError(try Vault.open(backend: backend, secret: .passphrase(Array("wrong".utf8)))) {
            XCTAssertEqual($0 as? VaultError, .wrongPassphrase)
        }
        let keyFile = Array("a key file's bytes".utf8)
        _ = try scratch.vault.addKeySlot(secret: .keyFile(keyFile), label: "robot", scrypt: ScryptParameters(n: 1 << 10, r: 8, p: 1))
        let viaFile = try Vault.open(backend: backend, secret: .keyFile(keyFile))
        XCTAssertEqual(viaFile.key.dataKey, scratch.vault.key.dataKey)
        XCTAssertNotEqual(viaFile.slotName, scratch.vault.slotName)
        // Opened through the key file, the passphrase slot can go; then the last slot cannot.
        _ = try viaFile.removeKeySlot(prefix: scratch.vault.slotName)
        XCTAssertThrowsError(try viaFile.removeKeySlot(prefix: viaFile.slotName)) {
            XCTAssertEqual($0 as? VaultError, .lastKeySlot)
        }
        XCTAssertThrowsError(try Vault.open(backend: backend, secret: .passphrase(Array("correct horse".utf8))))
    }

    func testSlotIsBoundToItsVault() throws {
        let a = try ScratchVault()
        let b = try ScratchVault()
        // A slot copied from another vault (same passphrase) must not open this one.
        let slotA = try LocalBackend(path: a.path).list(.keys)[0]
        let bytes = try LocalBackend(path: a.path).read(.keys, slotA)
        for name in try LocalBackend(path: b.path).list(.keys) { try LocalBackend(path: b.path).remove(.keys, name) }
        try LocalBackend(path: b.path).write(.keys, slotA, bytes)
        XCTAssertThrowsError(try Vault.open(backend: LocalBackend(path: b.path), secret: .passphrase(Array("correct horse".utf8))))
    }

    func testFormatErrors() throws {
        let dir = NSTemporaryDirectory() + "coffer-nv-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try Vault.readConfig(backend: LocalBackend(path: dir))) {
            XCTAssertEqual($0 as? VaultError, .notAVault(path: dir))
        }
        try LocalBackend(path: dir).write(.config, "config", Array(#"{"format": 9}"#.utf8))
        XCTAssertThrowsError(try Vault.readConfig(backend: LocalBackend(path: dir))) {
            XCTAssertEqual($0 as? VaultError, .newerFormat(found: 9, supported: 1))
        }
    }
}
