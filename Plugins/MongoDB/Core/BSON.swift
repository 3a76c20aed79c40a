import Foundation

/// An oplog Timestamp: seconds and an increment, ordered as the server orders them.
public struct Timestamp: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var t: UInt32
    public var i: UInt32

    public init(t: UInt32, i: UInt32) {
        self.t = t
        self.i = i
    }

    /// "T:I", as positions and `--to-timestamp` write it.
    public init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let t = UInt32(parts[0]), let i = UInt32(parts[1]) else { return nil }
        self.init(t: t, i: i)
    }

    public var description: String { "\(t):\(i)" }
    var packed: UInt64 { UInt64(t) << 32 | UInt64(i) }
    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.packed < b.packed }
}

/// One BSON value. The types the plugin reads or builds have their own case; every other
/// type is kept as its raw bytes, so a document round-trips unchanged.
public indirect enum BSON: Equatable, Sendable, ExpressibleByStringLiteral {
    case double(Double)
    case string(String)
    case document(Document)
    case array([BSON])
    case binary(subtype: UInt8, [UInt8])
    case objectId([UInt8])
    case bool(Bool)
    case datetime(Int64)
    case null
    case int32(Int32)
    case timestamp(Timestamp)
    case int64(Int64)
    case other(type: UInt8, [UInt8])

    public init(stringLiteral value: String) { self = .string(value) }

    public var document: Document? { if case .document(let d) = self { return d } else { return nil } }
    public var array: [BSON]? { if case .array(let a) = self { return a } else { return nil } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var timestamp: Timestamp? { if case .timestamp(let t) = self { return t } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var int: Int64? {
        switch self {
        case .int32(let v): return Int64(v)
        case .int64(let v): return v
        case .double(let v) where v == v.rounded(): return Int64(v)
        default: return nil
        }
    }
}

/// A BSON document: fields in order (order matters to commands and to equality).
public struct Document: Equatable, Sendable, ExpressibleByDictionaryLiteral {
    public private(set) var keys: [String] = []
    public private(set) var values: [BSON] = []

    public init() {}
    public init(dictionaryLiteral elements: (String, BSON)...) {
        for (k, v) in elements { append(k, v) }
    }

    public var isEmpty: Bool { keys.isEmpty }
    public var count: Int { keys.count }
    public var fields: [(key: String, value: BSON)] { zip(keys, values).map { ($0, $1) } }

    public subscript(key: String) -> BSON? {
        get { keys.firstIndex(of: key).map { values[$0] } }
        set {
            if let i = keys.firstIndex(of: key) {
                if let newValue { values[i] = newValue } else { keys.remove(at: i); values.remove(at: i) }
            } else if let newValue {
                append(key, newValue)
            }
        }
    }

    public mutating func append(_ key: String, _ value: BSON) {
        keys.append(key)
        values.append(value)
    }
}

public struct BSONError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

// MARK: - Decoding

extension Document {
    /// Decodes one document from its exact bytes.
    public init(bson bytes: UnsafeRawBufferPointer) throws {
        var r = BSONReader(bytes: bytes, at: 0)
        self = try r.document()
        guard r.at == bytes.count else { throw BSONError("\(bytes.count - r.at) bytes after the document") }
    }

    public init(bson bytes: [UInt8]) throws {
        self = try bytes.withUnsafeBytes { try Document(bson: $0) }
    }
}

struct BSONReader {
    let bytes: UnsafeRawBufferPointer
    var at: Int

    mutating func need(_ n: Int) throws {
        guard n >= 0, at + n <= bytes.count else { throw BSONError("truncated BSON at byte \(at)") }
    }

    mutating func int32() throws -> Int32 {
        try need(4)
        let v = bytes.loadUnaligned(fromByteOffset: at, as: Int32.self)
        at += 4
        return Int32(littleEndian: v)
    }

    mutating func int64() throws -> Int64 {
        try need(8)
        let v = bytes.loadUnaligned(fromByteOffset: at, as: Int64.self)
        at += 8
        return Int64(littleEndian: v)
    }

    mutating func raw(_ n: Int) throws -> [UInt8] {
        try need(n)
        defer { at += n }
        return Array(bytes[at..<at + n])
    }

    mutating func cstring() throws -> String {
        guard let end = bytes[at...].firstIndex(of: 0) else { throw BSONError("unterminated key at byte \(at)") }
        defer { at = end + 1 }
        return String(decoding: bytes[at..<end], as: UTF8.self)
    }

    mutating func string() throws -> String {
        let n = Int(try int32())
        guard n >= 1 else { throw BSONError("bad string length at byte \(at)") }
        let s = try raw(n)
        return String(decoding: s.dropLast(), as: UTF8.self)
    }

    mutating func document() throws -> Document {
        let start = at
        let length = Int(try int32())
        guard length >= 5, start + length <= bytes.count else { throw BSONError("bad document length \(length) at byte \(start)") }
        var d = Document()
        while true {
            try need(1)
            let type = bytes[at]
            at += 1
            if type == 0 { break }
            let key = try cstring()
            d.append(key, try value(type))
        }
        guard at == start + length else { throw BSONError("document at byte \(start) is not \(length) bytes long") }
        return d
    }

    mutating func value(_ type: UInt8) throws -> BSON {
        switch type {
        case 0x01: return .double(Double(bitPattern: UInt64(bitPattern: try int64())))
        case 0x02: return .string(try string())
        case 0x03: return .document(try document())
        case 0x04: return .array(try document().values)
        case 0x05:
            let n = Int(try int32())
            let sub = try raw(1)[0]
            return .binary(subtype: sub, try raw(n))
        case 0x07: return .objectId(try raw(12))
        case 0x08: return .bool(try raw(1)[0] != 0)
        case 0x09: return .datetime(try int64())
        case 0x0A: return .null
        case 0x10: return .int32(try int32())
        case 0x11:
            let v = UInt64(bitPattern: try int64())
            return .timestamp(Timestamp(t: UInt32(v >> 32), i: UInt32(v & 0xffff_ffff)))
        case 0x12: return .int64(try int64())
        default:
            let start = at
            switch type {
            case 0x06, 0x7F, 0xFF: break
            case 0x0B: _ = try cstring(); _ = try cstring()
            case 0x0C: _ = try string(); try need(12); at += 12
            case 0x0D, 0x0E: _ = try string()
            case 0x0F:
                let n = Int(try int32())
                try need(n - 4)
                at += n - 4
            case 0x13: try need(16); at += 16
            default: throw BSONError("unknown BSON type \(type) at byte \(at)")
            }
            return .other(type: type, Array(bytes[start..<at]))
        }
    }
}

// MARK: - Encoding

extension Document {
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        BSONWriter.document(self, into: &out)
        return out
    }
}

enum BSONWriter {
    static func int32(_ v: Int32, into out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    static func int64(_ v: Int64, into out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    static func document(_ d: Document, into out: inout [UInt8]) {
        elements(d.fields, into: &out)
    }

    static func elements(_ fields: [(key: String, value: BSON)], into out: inout [UInt8]) {
        let start = out.count
        int32(0, into: &out)
        for (k, v) in fields {
            out.append(typeByte(v))
            out.append(contentsOf: Array(k.utf8))
            out.append(0)
            value(v, into: &out)
        }
        out.append(0)
        let n = Int32(out.count - start).littleEndian
        withUnsafeBytes(of: n) { for (j, b) in $0.enumerated() { out[start + j] = b } }
    }

    static func typeByte(_ v: BSON) -> UInt8 {
        switch v {
        case .double: 0x01
        case .string: 0x02
        case .document: 0x03
        case .array: 0x04
        case .binary: 0x05
        case .objectId: 0x07
        case .bool: 0x08
        case .datetime: 0x09
        case .null: 0x0A
        case .int32: 0x10
        case .timestamp: 0x11
        case .int64: 0x12
        case .other(let t, _): t
        }
    }

    static func value(_ v: BSON, into out: inout [UInt8]) {
        switch v {
        case .double(let d): int64(Int64(bitPattern: d.bitPattern), into: &out)
        case .string(let s):
            let u = Array(s.utf8)
            int32(Int32(u.count + 1), into: &out)
            out.append(contentsOf: u)
            out.append(0)
        case .document(let d): document(d, into: &out)
        case .array(let a): elements(a.enumerated().map { (String($0.offset), $0.element) }, into: &out)
        case .binary(let sub, let b):
            int32(Int32(b.count), into: &out)
            out.append(sub)
            out.append(contentsOf: b)
        case .objectId(let b): out.append(contentsOf: b)
        case .bool(let b): out.append(b ? 1 : 0)
        case .datetime(let t): int64(t, into: &out)
        case .null: break
        case .int32(let i): int32(i, into: &out)
        case .timestamp(let ts): int64(Int64(bitPattern: ts.packed), into: &out)
        case .int64(let i): int64(i, into: &out)
        case .other(_, let raw): out.append(contentsOf: raw)
        }
    }
}

/// Splits a stream of concatenated BSON documents (a dump or oplog artifact) as it arrives.
public struct BSONStreamSplitter {
    private var buffer: [UInt8] = []
    public init() {}

    /// Appends bytes and hands on each whole document (its bytes).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ each: (UnsafeRawBufferPointer) throws -> Void) throws {
        buffer.append(contentsOf: bytes)
        var at = 0
        try buffer.withUnsafeBytes { b in
            while b.count - at >= 4 {
                let n = Int(Int32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: Int32.self)))
                guard n >= 5, n <= 64 << 20 else { throw BSONError("bad document length \(n) in a BSON stream") }
                guard b.count - at >= n else { break }
                try each(UnsafeRawBufferPointer(rebasing: b[at..<at + n]))
                at += n
            }
        }
        buffer.removeFirst(at)
    }

    /// Fails when the stream ended inside a document.
    public func finish() throws {
        guard buffer.isEmpty else { throw BSONError("the BSON stream ends inside a document (\(buffer.count) bytes left)") }
    }
}
