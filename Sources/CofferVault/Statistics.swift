/// Sizes for `vault info`.
public struct VaultStatistics: Sendable, Codable {
    public var packs = 0
    public var indexFiles = 0
    public var manifests = 0
    public var keySlots = 0
    public var blobs = 0
    /// Bytes of all pack files.
    public var storedBytes: Int64 = 0
    /// Plaintext bytes of the distinct blobs (after dedupe, before compression).
    public var uniqueBytes: Int64 = 0
    /// Sealed bytes of the distinct blobs (after compression and encryption).
    public var blobBytes: Int64 = 0
    /// Bytes of every artifact of every backup, as the user sees them.
    public var logicalBytes: Int64 = 0

    public var dedupeRatio: Double { uniqueBytes == 0 ? 1 : Double(logicalBytes) / Double(uniqueBytes) }
    public var compressionRatio: Double { blobBytes == 0 ? 1 : Double(uniqueBytes) / Double(blobBytes) }

    public static func gather(_ vault: Vault) throws -> VaultStatistics {
        try vault.loadIndex()
        var s = VaultStatistics()
        let backend = vault.backend
        let packNames = try backend.list(.packs)
        s.packs = packNames.count
        for p in packNames { s.storedBytes += Int64(try backend.size(.packs, p)) }
        s.indexFiles = try backend.list(.index).count
        s.keySlots = try backend.list(.keys).count
        var seen = Set<BlobID>()
        for name in try backend.list(.index) {
            let file = try IndexFile.read(backend: backend, name: name, key: vault.key.dataKey)
            for pack in file.packs {
                for e in pack.entries where e.type == .data && seen.insert(e.id).inserted {
                    s.blobs += 1
                    s.uniqueBytes += Int64(e.rawLength)
                    s.blobBytes += Int64(e.length)
                }
            }
        }
        for record in try vault.backups() {
            s.manifests += 1
            s.logicalBytes += record.manifest.logicalSize
        }
        return s
    }
}
