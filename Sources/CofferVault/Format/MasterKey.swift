/// The vault's secrets. Generated once at `vault init`; every key slot wraps the same bytes,
/// so adding or removing a slot never touches data.
public struct MasterKey: Sendable {
    /// AES-256-GCM key for blobs, pack headers, index files and manifests.
    public let dataKey: [UInt8]
    /// HMAC-SHA256 key for blob ids.
    public let idKey: [UInt8]
    /// Seed of the FastCDC gear table.
    public let chunkerSeed: [UInt8]

    static let encodedSize = 1 + 96
    static let version: UInt8 = 1

    public static func generate() -> MasterKey {
        MasterKey(dataKey: SecureRandom.bytes(32), idKey: SecureRandom.bytes(32), chunkerSeed: SecureRandom.bytes(32))
    }

    init(dataKey: [UInt8], idKey: [UInt8], chunkerSeed: [UInt8]) {
        self.dataKey = dataKey
        self.idKey = idKey
        self.chunkerSeed = chunkerSeed
    }

    var encoded: [UInt8] { [MasterKey.version] + dataKey + idKey + chunkerSeed }

    init?(encoded: [UInt8]) {
        guard encoded.count == MasterKey.encodedSize, encoded[0] == MasterKey.version else { return nil }
        dataKey = Array(encoded[1..<33])
        idKey = Array(encoded[33..<65])
        chunkerSeed = Array(encoded[65..<97])
    }
}
