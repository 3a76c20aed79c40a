import Foundation

/// One backup (or one log segment): what was stored, from where, and at which engine
/// positions. Stored zstd-compressed and sealed under `manifests/`, named by the SHA-256 of
/// its stored bytes; that name is the backup id.
public struct Manifest: Codable, Sendable, Equatable {
    public var version: Int = 1
    public var source: String
    public var engine: String
    /// full, incremental, log, or stream (a plain `coffer put`).
    public var kind: String
    public var parent: String?
    public var host: String
    public var started: Date
    public var finished: Date
    /// Engine positions as the plugin names them (start, stop, consistent, timeline, ...).
    public var positions: [String: String]
    public var artifacts: [Artifact]
    /// Plugin metadata, kept verbatim.
    public var metadata: [String: String]

    public init(source: String, engine: String, kind: String, parent: String? = nil,
                started: Date, finished: Date, positions: [String: String] = [:],
                artifacts: [Artifact], metadata: [String: String] = [:]) {
        self.source = source
        self.engine = engine
        self.kind = kind
        self.parent = parent
        self.host = ProcessInfo.processInfo.hostName
        self.started = started
        self.finished = finished
        self.positions = positions
        self.artifacts = artifacts
        self.metadata = metadata
    }

    public var logicalSize: Int64 { artifacts.reduce(0) { $0 + $1.size } }
}

/// One stored stream (a file, a dump, a segment).
public struct Artifact: Codable, Sendable, Equatable {
    public var name: String
    public var size: Int64
    public var chunker: String
    /// Blob ids of the content in order, inline (base64 of the 32-byte ids back to back)
    /// while there are at most `inlineLimit` of them.
    public var blobs: IDList?
    /// Otherwise the ids of `list` blobs that hold the content ids in order.
    public var lists: IDList?

    public static let inlineLimit = 4096
    public static let idsPerList = 32768

    public init(name: String, size: Int64, chunker: String, blobs: IDList?, lists: IDList?) {
        self.name = name
        self.size = size
        self.chunker = chunker
        self.blobs = blobs
        self.lists = lists
    }
}

/// Blob ids encoded as one base64 string: a quarter the size of hex in a JSON array.
public struct IDList: Codable, Sendable, Equatable {
    public var ids: [BlobID]

    public init(_ ids: [BlobID]) { self.ids = ids }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        guard let data = Data(base64Encoded: try c.decode(String.self)), data.count % 32 == 0 else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "bad id list")
        }
        ids = IDList.decode(Array(data))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Data(IDList.encode(ids)).base64EncodedString())
    }

    static func encode(_ ids: [BlobID]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(ids.count * 32)
        for id in ids { out.append(contentsOf: id.bytes) }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> [BlobID] {
        bytes.withUnsafeBytes { raw in
            stride(from: 0, to: raw.count, by: 32).map { BlobID(bytes: UnsafeRawBufferPointer(rebasing: raw[$0..<($0 + 32)])) }
        }
    }
}

/// A manifest with its id, as listed.
public struct BackupRecord: Sendable {
    public let id: String
    public let manifest: Manifest

    public init(id: String, manifest: Manifest) {
        self.id = id
        self.manifest = manifest
    }
}
