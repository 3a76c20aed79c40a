import CMariaDB
import Foundation

/// One binlog event as it is in the binlog file (header, body and checksum).
struct BinlogEvent {
    static let rotate: UInt8 = 4, stop: UInt8 = 3, query: UInt8 = 2, xid: UInt8 = 16, formatDescription: UInt8 = 15
    static let heartbeat: UInt8 = 27, gtid: UInt8 = 162, gtidList: UInt8 = 163
    static let artificialFlag: UInt16 = 0x20

    let bytes: [UInt8]
    var type: UInt8 { bytes[4] }
    var timestamp: UInt32 { u32(0) }
    var serverID: UInt32 { u32(5) }
    var length: UInt32 { u32(9) }
    /// The file position just after this event; 0 for events the server makes up.
    var logPos: UInt32 { u32(13) }
    var flags: UInt16 { UInt16(bytes[17]) | UInt16(bytes[18]) << 8 }

    func u32(_ at: Int) -> UInt32 {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }
    func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }

    /// Rotate: the next file's name and position.
    func rotateTarget(checksum: Bool) -> (file: String, position: UInt64) {
        let end = bytes.count - (checksum ? 4 : 0)
        return (String(decoding: bytes[27..<max(27, end)], as: UTF8.self), u64(19))
    }

    /// GTID event: domain, sequence number, and whether the group is a lone statement.
    var gtid: (domain: UInt32, seq: UInt64, standalone: Bool) { (u32(27), u64(19), bytes[31] & 1 != 0) }

    /// GTID list (at the start of each binlog file): the binlog state there, per domain.
    var gtidList: [GTIDState.Entry] {
        let count = Int(u32(19) & 0x0fff_ffff)
        return (0..<count).compactMap { i in
            let at = 23 + 16 * i
            guard at + 16 <= bytes.count else { return nil }
            return GTIDState.Entry(domain: u32(at), server: u32(at + 4), seq: u64(at + 8))
        }
    }

    /// A query event's statement text.
    func queryText(checksum: Bool) -> String {
        guard bytes.count > 32 else { return "" }
        let dbLength = Int(bytes[19 + 8])
        let varsLength = Int(UInt16(bytes[19 + 11]) | UInt16(bytes[19 + 12]) << 8)
        let start = 19 + 13 + varsLength + dbLength + 1
        let end = bytes.count - (checksum ? 4 : 0)
        guard start < end else { return "" }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}

/// GTID positions per replication domain ("0-1-57,1-2-9", the form of gtid_binlog_pos).
struct GTIDState: Equatable {
    struct Entry: Equatable { var domain: UInt32, server: UInt32, seq: UInt64 }
    var entries: [UInt32: Entry] = [:]

    init() {}
    init(_ text: String) {
        for part in text.split(separator: ",") {
            let f = part.trimmingCharacters(in: .whitespaces).split(separator: "-")
            guard f.count == 3, let d = UInt32(f[0]), let s = UInt32(f[1]), let n = UInt64(f[2]) else { continue }
            entries[d] = Entry(domain: d, server: s, seq: n)
        }
    }
    init(list: [Entry]) {
        for e in list where (entries[e.domain]?.seq ?? 0) <= e.seq { entries[e.domain] = e }
    }

    mutating func apply(_ e: Entry) { entries[e.domain] = e }

    var text: String {
        entries.keys.sorted().map { let e = entries[$0]!; return "\(e.domain)-\(e.server)-\(e.seq)" }.joined(separator: ",")
    }
}

/// Reads binlog events from the server as a replica (COM_BINLOG_DUMP through Connector/C's
/// mariadb_rpl API) with its own server id, from a file and position.
final class BinlogStream {
    let connection: Connection
    private let rpl: UnsafeMutablePointer<MARIADB_RPL>
    private var event: UnsafeMutablePointer<MARIADB_RPL_EVENT>?
    /// Whether events carry a CRC32 checksum (binlog_checksum).
    let checksum: Bool

    /// `nonBlocking`: the server ends the stream at the end of its last binlog instead of
    /// waiting for more; otherwise it sends a heartbeat every `heartbeat` seconds of quiet.
    init(_ settings: ConnectionSettings, file: String, position: UInt64, serverID: UInt32, nonBlocking: Bool,
         heartbeat: Double = 1) throws {
        connection = try Connection(settings)
        let algorithm = try connection.value("SELECT @@global.binlog_checksum") ?? "NONE"
        checksum = algorithm != "NONE"
        // As a GTID-aware MariaDB replica (capability 4), so GTID events come as written;
        // with the server's checksums, so events are byte for byte what the file holds.
        try connection.execute("SET @master_binlog_checksum = @@global.binlog_checksum, @mariadb_slave_capability = 4")
        try connection.execute("SET @master_heartbeat_period = \(UInt64(heartbeat * 1_000_000_000))")
        guard let r = coffer_rpl_init(connection.handle) else { throw MySQLError("mariadb_rpl_init failed") }
        rpl = r
        _ = file.withCString { coffer_rpl_set_file(r, $0, strlen($0)) }
        _ = coffer_rpl_set_start(r, UInt(position))
        _ = coffer_rpl_set_server_id(r, serverID)
        // Annotate-rows events are in the file too; the server leaves them out unless asked.
        let flags = UInt32(MARIADB_RPL_BINLOG_SEND_ANNOTATE_ROWS) | (nonBlocking ? UInt32(MARIADB_RPL_BINLOG_DUMP_NON_BLOCK) : 0)
        _ = coffer_rpl_set_flags(r, flags)
        guard mariadb_rpl_open(r) == 0 else {
            let message = String(cString: mysql_error(connection.handle))
            mariadb_rpl_close(r)
            throw MySQLError("cannot read binlog \(file) from \(position): \(message)", code: mysql_errno(connection.handle))
        }
    }

    deinit {
        if let event { mariadb_free_rpl_event(event) }
        mariadb_rpl_close(rpl)
    }

    /// The next event, or nil at the end of a non-blocking dump. Throws when the connection
    /// is lost (a server restart) or the server refuses (a purged binlog).
    func next() throws -> BinlogEvent? {
        guard let e = mariadb_rpl_fetch(rpl, event) else {
            event = nil
            let code = mysql_errno(connection.handle)
            if code == 0 { return nil }
            throw MySQLError("reading the binlog: \(String(cString: mysql_error(connection.handle)))", code: code)
        }
        event = e
        let raw = UnsafeRawBufferPointer(start: e.pointee.raw_data, count: e.pointee.raw_data_size)
        // The packet's leading OK byte precedes the event.
        let length = Int(e.pointee.event_length)
        guard raw.count >= length, length >= 19 else {
            throw MySQLError("binlog event of \(raw.count) bytes, its header says \(length)")
        }
        return BinlogEvent(bytes: Array(raw[(raw.count - length)...]))
    }
}
