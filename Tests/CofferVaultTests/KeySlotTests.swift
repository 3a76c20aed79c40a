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

extension KeySlotTests {
    /// Slots are read before anything authenticates them: absurd scrypt parameters must
    /// make a slot not open, not crash coffer or allocate without bound.
    func testCraftedSlotParametersAreRefused() throws {
        let scratch = try ScratchVault()
        let backend = LocalBackend(path: scratch.path)
        let name = try backend.list(.keys)[0]
        var json = try JSONSerialization.jsonObject(with: Data(try backend.read(.keys, name))) as! [String: Any]
        json["scrypt"] = ["n": 1 << 40, "r": 1 << 40, "p": 1]
        try backend.remove(.keys, name)
        try backend.write(.keys, name, Array(try JSONSerialization.data(withJSONObject: json)))
        XCTAssertThrowsError(try Vault.open(backend: backend, secret: .passphrase(Array("correct horse".utf8)))) {
            XCTAssertEqual($0 as? VaultError, .wrongPassphrase)
        }
    }

    func testInitTakesOnlyAnEmptyPlaceOrAnInterruptedInit() throws {
        let dir = NSTemporaryDirectory() + "coffer-init-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let backend = LocalBackend(path: dir)
        // An init that died after its key slot but before the config: retrying works.
        try backend.write(.keys, "0123456789abcdef", Array("{}".utf8))
        let vault = try Vault.create(backend: backend, secret: .passphrase([1]), scrypt: ScryptParameters(n: 1 << 10, r: 8, p: 1))
        XCTAssertEqual(try backend.list(.keys), [vault.slotName], "the dead init's slot is gone")
        XCTAssertThrowsError(try Vault.create(backend: backend, secret: .passphrase([1]))) {
            XCTAssertEqual($0 as? VaultError, .alreadyExists(path: dir))
        }
        // Anything else in the directory: refused.
        let other = NSTemporaryDirectory() + "coffer-init-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: other) }
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: other + "/notes.txt", contents: Data("mine".utf8)))
        XCTAssertThrowsError(try Vault.create(backend: LocalBackend(path: other), secret: .passphrase([1]))) {
            XCTAssertEqual($0 as? VaultError, .alreadyExists(path: other))
        }
    }
}
