import Foundation

/// The plaintext `config` object: what a reader needs before it has a key.
public struct VaultConfig: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public var format: Int
    public var id: String
    public var created: Date
    public var chunker: ChunkerParameters
    /// Packs are closed once they reach this many bytes.
    public var packSize: Int
    /// zstd level for new blobs (a `put` may override it).
    public var compressionLevel: Int

    public init(chunker: ChunkerParameters = .standard, packSize: Int = 16 << 20, compressionLevel: Int = 3) {
        format = VaultConfig.currentFormat
        id = UUID().uuidString.lowercased()
        created = Date()
        self.chunker = chunker
        self.packSize = packSize
        self.compressionLevel = compressionLevel
    }
}

enum JSON {
    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(Timestamp.format(date))
        }
        e.outputFormatting = [.sortedKeys]
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let text = try c.decode(String.self)
            guard let date = Timestamp.parse(text) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "bad timestamp \(text)")
            }
            return date
        }
        return d
    }
}

/// RFC 3339 timestamps with milliseconds, always UTC.
public enum Timestamp {
    public static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    public static func parse(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }
}
