import Foundation

/// One oplog entry, with the fields replay and slicing read.
public struct OplogEntry: Sendable {
    public let document: Document
    public let ts: Timestamp
    /// Wall-clock time of the write, ms since the Unix epoch (0 when the entry has none).
    public let wall: Int64

    public init(_ document: Document) throws {
        guard let ts = document["ts"]?.timestamp else { throw MongoError("an oplog entry without ts") }
        self.document = document
        self.ts = ts
        if case .datetime(let w)? = document["wall"] { wall = w } else { wall = Int64(ts.t) * 1000 }
    }

    public var op: String { document["op"]?.string ?? "" }
    public var ns: String { document["ns"]?.string ?? "" }
}

public enum Oplog {
    /// The newest entry of local.oplog.rs. (Not hello's lastWrite: on SecantusDB it runs
    /// ahead of the newest entry. On SecantusDB any query of the oplog scans all of it.)
    public static func newest(_ client: MongoClient) throws -> OplogEntry {
        try end(client, direction: -1)
    }

    public static func oldest(_ client: MongoClient) throws -> OplogEntry {
        try end(client, direction: 1)
    }

    static func end(_ client: MongoClient, direction: Int32) throws -> OplogEntry {
        let cursor = try client.find("local", "oplog.rs", opts: ["sort": .document(["$natural": .int32(direction)]), "limit": .int32(1)])
        guard let d = try cursor.nextDocument() else { throw MongoError("local.oplog.rs is empty: is the server a replica-set member?") }
        return try OplogEntry(d)
    }

    /// ISO 8601 UTC with milliseconds, as positions record oplog wall times.
    public static func iso(_ ms: Int64) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    /// Reads a time target: ISO 8601 ("2026-11-26T19:40:01.123Z") or "2026-11-26 19:40:01.123"
    /// (no zone means UTC, with an optional +HH or +HH:MM); ms since the epoch.
    public static func parseTime(_ text: String) -> Int64? {
        var s = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: " ", with: "T")
        if s.hasSuffix("Z") { s.removeLast(); s += "+00:00" }
        var zone = "+00:00"
        if let r = s.range(of: #"[+-]\d\d(:?\d\d)?$"#, options: .regularExpression), s.distance(from: s.startIndex, to: r.lowerBound) >= 10 {
            var z = String(s[r])
            if z.count == 3 { z += ":00" } else if !z.contains(":") { z.insert(":", at: z.index(z.startIndex, offsetBy: 3)) }
            zone = z
            s.removeSubrange(r)
        }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s + zone) { return Int64((d.timeIntervalSince1970 * 1000).rounded()) }
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: s + zone) { return Int64((d.timeIntervalSince1970 * 1000).rounded()) }
        return nil
    }
}
