import Foundation

/// The names of the files PostgreSQL archives: segments (`TTTTTTTTXXXXXXXXYYYYYYYY`),
/// timeline history files (`TTTTTTTT.history`), partial segments left by a promotion
/// (`<segment>.partial`) and backup history files (`<segment>.XXXXXXXX.backup`).
enum WALFileName: Equatable {
    case segment(timeline: UInt32, number: UInt64)
    case history(timeline: UInt32)
    case partial(timeline: UInt32, number: UInt64)
    case backupHistory(String)

    /// Segments per 4 GiB "xlogid" (the middle 8 hex digits count those).
    static func perXLogID(_ segmentSize: UInt64) -> UInt64 { 0x1_0000_0000 / segmentSize }

    init?(_ name: String, segmentSize: UInt64) {
        func hex(_ s: Substring) -> UInt64? {
            s.allSatisfy(\.isHexDigit) ? UInt64(s, radix: 16) : nil
        }
        func segment(_ s: Substring) -> (UInt32, UInt64)? {
            guard s.count == 24, let tli = hex(s.prefix(8)), let hi = hex(s.dropFirst(8).prefix(8)),
                  let lo = hex(s.suffix(8)), tli > 0, lo < WALFileName.perXLogID(segmentSize)
            else { return nil }
            return (UInt32(tli), hi * WALFileName.perXLogID(segmentSize) + lo)
        }
        if let (tli, n) = segment(Substring(name)) {
            self = .segment(timeline: tli, number: n)
        } else if name.hasSuffix(".history"), name.count == 16, let tli = hex(name.prefix(8)), tli > 0 {
            self = .history(timeline: UInt32(tli))
        } else if name.hasSuffix(".partial"), let (tli, n) = segment(name.dropLast(8)) {
            self = .partial(timeline: tli, number: n)
        } else if name.hasSuffix(".backup"), name.count == 40, segment(name.prefix(24)) != nil {
            self = .backupHistory(name)
        } else {
            return nil
        }
    }

    static func segment(timeline: UInt32, number: UInt64, segmentSize: UInt64) -> String {
        let per = perXLogID(segmentSize)
        return hex8(UInt64(timeline)) + hex8(number / per) + hex8(number % per)
    }

    static func history(timeline: UInt32) -> String { hex8(UInt64(timeline)) + ".history" }

    static func hex8(_ v: UInt64) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}

/// PostgreSQL times: microseconds since the Unix epoch inside Coffer's metadata, written out
/// as PostgreSQL reads them back in recovery_target_time.
enum PGTime {
    /// PostgreSQL's TimestampTz counts from 2000-01-01 UTC.
    static let postgresEpochOffset: Int64 = 946_684_800_000_000

    static func micros(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }

    /// "2026-11-26 19:40:01.123456+00": exact to the microsecond, in UTC.
    static func format(_ micros: Int64) -> String {
        var seconds = time_t(micros / 1_000_000)
        var fraction = micros % 1_000_000
        if fraction < 0 { fraction += 1_000_000; seconds -= 1 }
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let frac = String(fraction)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d.", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec)
            + String(repeating: "0", count: 6 - frac.count) + frac + "+00"
    }

    /// Reads "2026-11-26 19:40:01.123456+00", "2026-11-26T19:40:01.123Z", with or without
    /// fraction and zone (a missing zone is UTC), to microseconds since the Unix epoch.
    static func parse(_ text: String) -> Int64? {
        let s = text.trimmingCharacters(in: .whitespaces)
        let scalars = Array(s.unicodeScalars)
        func digits(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= scalars.count else { return nil }
            var v = 0
            for i in from..<(from + count) {
                guard let d = Int(String(scalars[i])) else { return nil }
                v = v * 10 + d
            }
            return v
        }
        guard let year = digits(0, 4), scalars.count >= 19, scalars[4] == "-", let month = digits(5, 2),
              scalars[7] == "-", let day = digits(8, 2), scalars[10] == " " || scalars[10] == "T",
              let hour = digits(11, 2), scalars[13] == ":", let minute = digits(14, 2), scalars[16] == ":",
              let second = digits(17, 2)
        else { return nil }
        var i = 19
        var micros: Int64 = 0
        if i < scalars.count, scalars[i] == "." {
            i += 1
            var n = 0
            while i < scalars.count, let d = Int(String(scalars[i])) {
                if n < 6 { micros = micros * 10 + Int64(d) }
                n += 1
                i += 1
            }
            guard n > 0 else { return nil }
            for _ in n..<max(n, 6) { micros *= 10 }
        }
        var offsetSeconds = 0
        if i < scalars.count {
            let zone = String(String.UnicodeScalarView(scalars[i...]))
            if zone == "Z" || zone == "z" || zone == "UTC" || zone == " UTC" {
                offsetSeconds = 0
            } else {
                guard let sign = zone.first, sign == "+" || sign == "-" else { return nil }
                let rest = zone.dropFirst().replacingOccurrences(of: ":", with: "")
                guard rest.count == 2 || rest.count == 4, let v = Int(rest) else { return nil }
                let (h, m) = rest.count == 2 ? (v, 0) : (v / 100, v % 100)
                offsetSeconds = (h * 3600 + m * 60) * (sign == "-" ? -1 : 1)
            }
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let epoch = Int64(timegm(&parts)) - Int64(offsetSeconds)
        return epoch * 1_000_000 + micros
    }
}
