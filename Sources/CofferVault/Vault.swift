import Foundation

/// An open vault: its backend, config and master key. Everything else (index, backups,
/// checks) is built on this.
public final class Vault: Sendable {
    public let backend: any VaultBackend
    public let config: VaultConfig
    public let key: MasterKey
    /// The key slot that opened the vault.
    public let slotName: String
    public let index = MasterIndex()
    let idHasher: HMACSHA256
    let cdc: FastCDC

    init(backend: any VaultBackend, config: VaultConfig, key: MasterKey, slotName: String) {
        self.backend = backend
        self.config = config
        self.key = key
        self.slotName = slotName
        self.idHasher = HMACSHA256(key: key.idKey)
        self.cdc = FastCDC(parameters: config.chunker, seed: key.chunkerSeed)
    }

    /// Creates a new vault with one key slot. The directory must not hold anything else.
    public static func create(backend: any VaultBackend, secret: KeySecret, config: VaultConfig = VaultConfig(),
                              scrypt: ScryptParameters = .standard, label: String = "initial") throws -> Vault {
        try config.chunker.validate()
        guard config.packSize >= 1 << 20, config.packSize <= 1 << 30 else {
            throw VaultError.invalidArgument("pack size must be between 1M and 1G")
        }
        // Only an empty place, or the leftovers of an init that died before writing the
        // config (key slots, temporaries: no data can exist without a config), is taken.
        guard try backend.topLevelEntries().allSatisfy({ $0 == "keys" || $0 == "tmp" }) else {
            throw VaultError.alreadyExists(path: backend.location)
        }
        for stale in try backend.list(.keys) { try backend.remove(.keys, stale) }
        let master = MasterKey.generate()
        let slot = try KeySlot.make(master: master, secret: secret, vaultID: config.id, label: label, scrypt: scrypt)
        let slotName = Hex.encode(SecureRandom.bytes(8))
        try backend.write(.keys, slotName, Array(try JSON.encoder().encode(slot)))
        // The config goes last: its presence is what makes the directory a vault.
        try backend.write(.config, "config", Array(try JSON.encoder().encode(config)))
        return Vault(backend: backend, config: config, key: master, slotName: slotName)
    }

    public static func readConfig(backend: any VaultBackend) throws -> VaultConfig {
        let bytes: [UInt8]
        do {
            bytes = try backend.read(.config, "config")
        } catch VaultError.missingObject {
            throw VaultError.notAVault(path: backend.location)
        }
        struct FormatOnly: Decodable { var format: Int }
        guard let format = try? JSONDecoder().decode(FormatOnly.self, from: Data(bytes)) else {
            throw VaultError.notAVault(path: backend.location)
        }
        guard format.format <= VaultConfig.currentFormat else {
            throw VaultError.newerFormat(found: format.format, supported: VaultConfig.currentFormat)
        }
        do {
            return try JSON.decoder().decode(VaultConfig.self, from: Data(bytes))
        } catch {
            throw VaultError.corruptObject(kind: .config, name: "config", reason: "\(error)")
        }
    }

    /// Opens the vault with the first key slot the secret fits. Touches nothing on failure.
    public static func open(backend: any VaultBackend, secret: KeySecret) throws -> Vault {
        let config = try readConfig(backend: backend)
        for (name, slot) in try keySlots(backend: backend) {
            if let master = try slot.open(secret: secret, vaultID: config.id) {
                return Vault(backend: backend, config: config, key: master, slotName: name)
            }
        }
        throw VaultError.wrongPassphrase
    }

    public static func keySlots(backend: any VaultBackend) throws -> [(name: String, slot: KeySlot)] {
        try backend.list(.keys).compactMap { name in
            guard let slot = try? JSON.decoder().decode(KeySlot.self, from: Data(try backend.read(.keys, name))) else {
                return nil
            }
            return (name, slot)
        }
    }

    // MARK: - key slots

    public func addKeySlot(secret: KeySecret, label: String, scrypt: ScryptParameters = .standard) throws -> String {
        let slot = try KeySlot.make(master: key, secret: secret, vaultID: config.id, label: label, scrypt: scrypt)
        let name = Hex.encode(SecureRandom.bytes(8))
        try backend.write(.keys, name, Array(try JSON.encoder().encode(slot)))
        return name
    }

    /// Removes a slot. Refuses the last one, and the one that opened this session (so a typo
    /// cannot lock the caller out).
    public func removeKeySlot(prefix: String) throws -> String {
        let slots = try Vault.keySlots(backend: backend)
        let matches = slots.filter { $0.name.hasPrefix(prefix) }
        guard let match = matches.first else { throw VaultError.invalidArgument("no key slot matches '\(prefix)'") }
        guard matches.count == 1 else { throw VaultError.invalidArgument("'\(prefix)' matches more than one key slot") }
        guard slots.count > 1 else { throw VaultError.lastKeySlot }
        guard match.name != slotName else {
            throw VaultError.invalidArgument(
                "refusing to remove key slot \(match.name): it is the one this command was opened with; open with another slot to remove it")
        }
        try backend.remove(.keys, match.name)
        return match.name
    }

    // MARK: - blobs, index and manifests

    /// A sealed blob's plaintext, authenticated and checked against its id; the error names
    /// the pack it came from.
    ///
    /// `checkID: false` skips recomputing the id (a keyed SHA-256 of the plaintext, 40% of a
    /// restore's CPU): the GCM tag already binds the plaintext to its id and type (they are
    /// its associated data), so only a writer holding the keys could have stored a blob
    /// under a wrong id. Restores trust the tag; `check --read-data` recomputes every id.
    func openBlob(_ sealed: [UInt8], entry: PackEntry, pack: String, checkID: Bool = true) throws -> [UInt8] {
        try sealed.withUnsafeBytes { try openBlob($0, entry: entry, pack: pack, checkID: checkID) }
    }

    func openBlob(_ sealed: UnsafeRawBufferPointer, entry: PackEntry, pack: String, checkID: Bool = true) throws -> [UInt8] {
        guard let plain = PackFormat.openBlob(sealed, id: entry.id, type: entry.type, rawLength: Int(entry.rawLength),
                                              key: key.dataKey)
        else {
            throw VaultError.corruptObject(kind: .packs, name: pack,
                                           reason: "blob \(entry.id.hex) at offset \(entry.offset) fails authentication")
        }
        guard !checkID || BlobID(bytes: idHasher.mac(prefix: [entry.type.rawValue], plain)) == entry.id else {
            throw VaultError.corruptObject(kind: .packs, name: pack, reason: "blob \(entry.id.hex) does not match its id")
        }
        return plain
    }

    /// Opens a blob into `out` (exactly its raw length), as `openBlob` does into an array.
    func openBlob(_ sealed: UnsafeRawBufferPointer, entry: PackEntry, pack: String, checkID: Bool,
                  into out: UnsafeMutableRawBufferPointer) throws {
        guard out.count == Int(entry.rawLength),
              PackFormat.openBlob(sealed, id: entry.id, type: entry.type, into: out, key: key.dataKey) else {
            throw VaultError.corruptObject(kind: .packs, name: pack,
                                           reason: "blob \(entry.id.hex) at offset \(entry.offset) fails authentication")
        }
        guard !checkID || BlobID(bytes: idHasher.mac(prefix: [entry.type.rawValue], UnsafeRawBufferPointer(out))) == entry.id else {
            throw VaultError.corruptObject(kind: .packs, name: pack, reason: "blob \(entry.id.hex) does not match its id")
        }
    }

    /// Loads the index files written since the last call.
    public func loadIndex() throws {
        try index.load(backend: backend, key: key.dataKey, strict: true)
    }

    public func readManifest(id: String) throws -> Manifest {
        let stored = try backend.read(.manifests, id)
        guard SHA256.hex(stored) == id else {
            throw VaultError.corruptObject(kind: .manifests, name: id, reason: "content does not match its name (hash)")
        }
        guard let payload = AESGCM.open(key: key.dataKey, aad: AssociatedData.manifest, stored), !payload.isEmpty else {
            throw VaultError.corruptObject(kind: .manifests, name: id, reason: "fails authentication")
        }
        let body = payload.withUnsafeBytes { p -> [UInt8]? in
            let rest = UnsafeRawBufferPointer(rebasing: p[1...])
            switch payload[0] {
            case PackFormat.encodingRaw: return Array(rest)
            case PackFormat.encodingZstd: return Zstd.decompressUnknown(rest)
            default: return nil
            }
        }
        guard let plain = body else {
            throw VaultError.corruptObject(kind: .manifests, name: id, reason: "unknown encoding or bad zstd frame")
        }
        struct VersionOnly: Decodable { var version: Int }
        if let v = try? JSONDecoder().decode(VersionOnly.self, from: Data(plain)), v.version > 1 {
            throw VaultError.newerFormat(found: v.version, supported: 1)
        }
        do {
            return try JSON.decoder().decode(Manifest.self, from: Data(plain))
        } catch {
            throw VaultError.corruptObject(kind: .manifests, name: id, reason: "unreadable: \(error)")
        }
    }

    func writeManifest(_ manifest: Manifest) throws -> String {
        let plain = Array(try JSON.encoder().encode(manifest))
        let sealed: [UInt8] = plain.withUnsafeBytes { p in
            if let compressed = Zstd(level: 3).compress(p) {
                return withUnsafeBytes(of: PackFormat.encodingZstd) { f in
                    compressed.withUnsafeBytes { AESGCM.seal(key: key.dataKey, aad: AssociatedData.manifest, parts: [f, $0]) }
                }
            }
            return withUnsafeBytes(of: PackFormat.encodingRaw) { f in
                AESGCM.seal(key: key.dataKey, aad: AssociatedData.manifest, parts: [f, p])
            }
        }
        let id = SHA256.hex(sealed)
        try backend.write(.manifests, id, sealed)
        return id
    }

    /// Every backup, oldest first. An unreadable manifest fails the listing, naming it
    /// (`vault check` lists every bad one).
    public func backups(source: String? = nil) throws -> [BackupRecord] {
        var out: [BackupRecord] = []
        for id in try backend.list(.manifests) {
            let m = try readManifest(id: id)
            if source == nil || m.source == source { out.append(BackupRecord(id: id, manifest: m)) }
        }
        return out.sorted { ($0.manifest.started, $0.id) < ($1.manifest.started, $1.id) }
    }

    /// Resolves a full id or a unique prefix (at least 4 characters) to a backup id.
    public func resolveBackup(_ prefix: String) throws -> String {
        let lower = prefix.lowercased()
        guard lower.count >= 4 else { throw VaultError.invalidArgument("give at least 4 characters of the backup id") }
        let matches = try backend.list(.manifests).filter { $0.hasPrefix(lower) }
        guard !matches.isEmpty else { throw VaultError.backupNotFound(prefix) }
        guard matches.count == 1 else { throw VaultError.ambiguousBackup(prefix) }
        return matches[0]
    }
}

extension Zstd {
    /// For objects whose raw length is not recorded outside them (manifests).
    static func decompressUnknown(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        let size = ZstdFrame.contentSize(input)
        guard let size, size < 1 << 31 else { return nil }
        return decompress(input, rawLength: size)
    }
}
