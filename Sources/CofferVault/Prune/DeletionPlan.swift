import Foundation

/// `gc/<64 hex>`: packs that a prune took out of the index, to be deleted once it is safe
/// (docs/decisions/009). Plain JSON (pack names are no secret), named by the SHA-256 of its
/// bytes, written once; removed when its packs are gone.
public struct DeletionPlan: Codable, Sendable, Equatable {
    public var version = 1
    /// When the index files that named these packs were gone (the prune's clock): a writer
    /// that began later cannot have deduped against them.
    public var created: Date
    public var host: String
    /// Pack names (hex).
    public var packs: [String]

    static func read(backend: any VaultBackend, name: String) throws -> DeletionPlan {
        let bytes = try backend.read(.gc, name)
        do {
            return try JSON.decoder().decode(DeletionPlan.self, from: Data(bytes))
        } catch {
            throw VaultError.corruptObject(kind: .gc, name: name, reason: "unreadable: \(error)")
        }
    }

    func write(backend: any VaultBackend) throws -> String {
        let bytes = Array(try JSON.encoder().encode(self))
        let name = SHA256.hex(bytes)
        try backend.write(.gc, name, bytes)
        return name
    }
}
