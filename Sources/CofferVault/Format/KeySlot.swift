import Foundation

/// What opens a key slot.
public enum KeySecret: Sendable {
    case passphrase([UInt8])
    /// The bytes of a key file (its whole content).
    case keyFile([UInt8])
}

/// One file under `keys/`: the master key wrapped under a key derived from a passphrase
/// (scrypt) or a key file (HMAC-SHA256 of a random salt under the file's bytes).
public struct KeySlot: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case passphrase, keyfile }

    public var version: Int
    public var kind: Kind
    public var created: Date
    public var label: String
    public var host: String
    public var salt: String
    public var scrypt: ScryptParameters?
    public var wrapped: String

    static func make(master: MasterKey, secret: KeySecret, vaultID: String, label: String,
                     scrypt: ScryptParameters) throws -> KeySlot {
        let salt = SecureRandom.bytes(32)
        let kind: Kind
        switch secret {
        case .passphrase: kind = .passphrase
        case .keyFile: kind = .keyfile
        }
        let kek = try deriveKEK(secret: secret, salt: salt, scrypt: scrypt)
        let wrapped = AESGCM.seal(key: kek, aad: AssociatedData.keySlot(vaultID: vaultID), master.encoded)
        return KeySlot(version: 1, kind: kind, created: Date(), label: label,
                       host: ProcessInfo.processInfo.hostName, salt: Data(salt).base64EncodedString(),
                       scrypt: kind == .passphrase ? scrypt : nil, wrapped: Data(wrapped).base64EncodedString())
    }

    /// The master key, or nil when the secret does not fit this slot (or the slot is of the
    /// other kind).
    func open(secret: KeySecret, vaultID: String) throws -> MasterKey? {
        switch (kind, secret) {
        case (.passphrase, .passphrase), (.keyfile, .keyFile): break
        default: return nil
        }
        // A slot this version cannot read, or with absurd parameters, opens nothing.
        guard version == 1, (scrypt ?? .standard).isSane else { return nil }
        guard let salt = Data(base64Encoded: self.salt), let wrapped = Data(base64Encoded: self.wrapped) else {
            return nil
        }
        let kek = try KeySlot.deriveKEK(secret: secret, salt: Array(salt), scrypt: scrypt ?? .standard)
        guard let plain = AESGCM.open(key: kek, aad: AssociatedData.keySlot(vaultID: vaultID), Array(wrapped)) else {
            return nil
        }
        return MasterKey(encoded: plain)
    }

    private static func deriveKEK(secret: KeySecret, salt: [UInt8], scrypt: ScryptParameters) throws -> [UInt8] {
        switch secret {
        case .passphrase(let pass): return try scrypt.deriveKey(passphrase: pass, salt: salt)
        case .keyFile(let bytes): return HMACSHA256(key: bytes).mac(Array("coffer-keyfile-slot".utf8) + salt)
        }
    }
}
