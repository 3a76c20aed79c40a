import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Stores the server's binlog in the vault as slices: byte ranges of one binlog file, cut
/// at transaction boundaries every `capture_slice_seconds` (default 5) or
/// `capture_slice_bytes` (default 64 MiB), and at every rotation. A slice is named
/// `FILE@START-END`; its positions say where the next one starts, so a capture resumes
/// exactly after the last slice the vault holds (`last`). Slices of one file put end to
/// end are that file, byte for byte (a restore replays them with mariadb-binlog).
struct BinlogCapture {
    let request: CaptureRequest
    let settings: ConnectionSettings
    let sink: LogSink

    var sliceSeconds: Double { Double(request.options["capture_slice_seconds"] ?? "") ?? 5 }
    var sliceBytes: Int { Int(request.options["capture_slice_bytes"] ?? "") ?? 64 << 20 }
    /// How long a follow capture keeps trying to reconnect to a server that went away.
    var reconnectSeconds: Double { Double(request.options["capture_reconnect_seconds"] ?? "") ?? 600 }
    /// The replica server id; must differ from every server's and replica's.
    var serverID: UInt32 { UInt32(request.options["capture_server_id"] ?? "") ?? 4_000_000_000 + UInt32(getpid() % 100_000) }

    /// Where the capture is: the file, the next byte position in it, whether it is closed.
    struct Cursor {
        var file: String
        var offset: UInt64
        var closed: Bool
        var gtid: GTIDState
    }

    func run() throws {
        var start: Cursor?
        var lostSince: Date?
        while true {
            do {
                let cursor = try start ?? startingPoint()
                start = cursor
                guard var c = try resolve(cursor) else {
                    // A closed file and no next one yet: nothing to read until the server rotates.
                    if !request.follow { return }
                    try sink.alive()
                    usleep(500_000)
                    continue
                }
                lostSince = nil  // the server answered
                defer { start = c }
                if try stream(&c) { return }
            } catch let error as MySQLError where request.follow && BinlogCapture.isConnectionLoss(error) {
                // A server restart: keep what is committed, reconnect and resume from the cursor.
                let since = lostSince ?? Date()
                lostSince = since
                guard Date().timeIntervalSince(since) < reconnectSeconds else {
                    throw MySQLError("the server has been unreachable for \(Int(reconnectSeconds)) s: \(error)")
                }
                PluginRunner.log("binlog capture: \(error); reconnecting")
                try sink.alive()
                usleep(500_000)
            }
        }
    }

    static func isConnectionLoss(_ error: MySQLError) -> Bool {
        [2002, 2003, 2006, 2013, 2026, 1927, 1053].contains(error.code) || error.description.contains("cannot connect")
    }

    /// Right after the last slice in the vault, or the server's oldest binlog.
    private func startingPoint() throws -> Cursor {
        if let last = request.last {
            let p = last.positions
            guard let file = p["file"], let end = p["end"].flatMap(UInt64.init) else {
                throw MySQLError("the last log in the vault (\(p["log"] ?? last.id)) has no file/end position")
            }
            return Cursor(file: file, offset: end, closed: p["closed"] == "1", gtid: GTIDState(p["gtid_end"] ?? ""))
        }
        let logs = try binaryLogs()
        guard let first = logs.first else { throw MySQLError("the server has no binary logs (log_bin is off)") }
        return Cursor(file: first, offset: 0, closed: false, gtid: GTIDState())
    }

    private func binaryLogs() throws -> [String] {
        try Connection(settings).query("SHOW BINARY LOGS").compactMap { $0[0] }
    }

    /// The cursor to read from: past a closed file, the next file, which must be the next
    /// number (a file missing between them is a gap the capture refuses to skip); a file no
    /// longer on the server is an error naming it. nil when the next file does not exist yet.
    private func resolve(_ cursor: Cursor) throws -> Cursor? {
        let logs = try binaryLogs()
        if !cursor.closed {
            guard logs.contains(cursor.file) else {
                throw MySQLError("binlog \(cursor.file) is no longer on the server (purged?): the capture cannot continue from \(cursor.file):\(cursor.offset) without a gap; take a new full backup and capture from there")
            }
            return cursor
        }
        guard let next = logs.first(where: { BinlogName.compare($0, cursor.file) > 0 }) else { return nil }
        guard BinlogName.follows(next, cursor.file) else {
            throw MySQLError("binlog after \(cursor.file) is \(next) on the server: the files between are gone (purged?), a gap the capture cannot bridge")
        }
        return Cursor(file: next, offset: 0, closed: false, gtid: cursor.gtid)
    }

    /// Streams from the cursor, committing slices; true when a non-follow capture is done.
    private func stream(_ cursor: inout Cursor) throws -> Bool {
        let stream = try BinlogStream(settings, file: cursor.file, position: max(cursor.offset, 4), serverID: serverID,
                                      nonBlocking: !request.follow)
        var slice = Slice(file: cursor.file, start: cursor.offset, gtid: cursor.gtid)
        // Where the stream is in the file (cursor moves only when a slice is committed).
        var offset = cursor.offset
        if cursor.offset == 0 {
            slice.bytes = [0xfe, 0x62, 0x69, 0x6e]  // the binlog file's magic number
            slice.boundary = 4
            offset = 4
        }
        var inGroup = false
        var standaloneGroup = false
        // Set once the file's last event (rotate, stop) is committed: the server's made-up
        // rotate to the next file then only switches files.
        var fileClosed = false
        func commit(closed: Bool) throws {
            let cut = closed ? slice.bytes.count : slice.boundary
            guard cut > 0 || closed else { return }
            let end = slice.start + UInt64(cut)
            if cut > 0 || closed {
                let bytes = slice.bytes[..<cut]
                try sink.artifact(name: "binlog", chunker: "whole") { out in try bytes.withUnsafeBytes { try out.write($0) } }
                var positions = ["log": "\(slice.file)@\(slice.start)-\(end)", "file": slice.file,
                                 "start": String(slice.start), "end": String(end), "closed": closed ? "1" : "0",
                                 "gtid_start": slice.gtidStart.text, "gtid_end": slice.boundaryGTID.text]
                if closed { positions["gtid_end"] = slice.gtid.text }
                if let t = slice.firstTime { positions["first_time"] = String(t) }
                if let t = closed ? slice.lastTime : slice.boundaryTime { positions["last_time"] = String(t) }
                try sink.commit(positions: positions, metadata: ["events": String(slice.events), "server_id": String(serverID)])
            }
            let rest = Array(slice.bytes[cut...])
            let gtid = closed ? slice.gtid : slice.boundaryGTID
            cursor = Cursor(file: slice.file, offset: end, closed: closed, gtid: gtid)
            var next = Slice(file: slice.file, start: end, gtid: gtid)
            next.bytes = rest
            next.gtid = slice.gtid
            next.firstTime = rest.isEmpty ? nil : slice.lastTime
            slice = next
        }
        while true {
            let event: BinlogEvent?
            do {
                event = try stream.next()
            } catch {
                // Whatever whole transactions arrived are kept; the rest is read again.
                if slice.boundary > 0 && slice.boundary > (slice.start == 0 ? 4 : 0) { try commit(closed: false) }
                throw error
            }
            guard let event else {
                if slice.boundary > (slice.start == 0 ? 4 : 0) { try commit(closed: false) }
                return true
            }
            let type = event.type
            if type == BinlogEvent.heartbeat {
                if !inGroup, slice.boundary > (slice.start == 0 ? 4 : 0), slice.age >= sliceSeconds { try commit(closed: false) }
                try sink.alive()
                continue
            }
            if type == BinlogEvent.rotate && (event.logPos == 0 || event.flags & BinlogEvent.artificialFlag != 0) {
                let target = event.rotateTarget(checksum: stream.checksum)
                if target.file != slice.file {
                    // Unless its rotate came already, the file ended without an event saying so
                    // (the server crashed): it is closed as it is.
                    if !fileClosed { try commit(closed: true) }
                    fileClosed = false
                    slice = Slice(file: target.file, start: 0, gtid: cursor.gtid)
                    slice.bytes = [0xfe, 0x62, 0x69, 0x6e]
                    slice.boundary = 4
                    offset = 4
                }
                continue
            }
            if event.logPos == 0 { continue }  // the format description resent for a mid-file start
            guard UInt64(event.logPos) == offset + UInt64(event.length) else {
                throw MySQLError("binlog \(slice.file): event at \(offset) of \(event.length) bytes ends at \(event.logPos); the stream does not continue the file where expected")
            }
            slice.bytes += event.bytes
            slice.events += 1
            offset = UInt64(event.logPos)
            if slice.firstTime == nil { slice.firstTime = event.timestamp }
            slice.lastTime = event.timestamp
            switch type {
            case BinlogEvent.gtidList:
                let state = GTIDState(list: event.gtidList)
                if slice.start == 0 { slice.gtidStart = state }
                slice.gtid = state
            case BinlogEvent.gtid:
                let g = event.gtid
                slice.gtid.apply(.init(domain: g.domain, server: event.serverID, seq: g.seq))
                inGroup = true
                standaloneGroup = g.standalone
            case BinlogEvent.xid:
                inGroup = false
            case BinlogEvent.query:
                if standaloneGroup || event.queryText(checksum: stream.checksum) == "COMMIT" { inGroup = false; standaloneGroup = false }
            default:
                break
            }
            if !inGroup {
                slice.boundary = slice.bytes.count
                slice.boundaryGTID = slice.gtid
                slice.boundaryTime = event.timestamp
            }
            if type == BinlogEvent.rotate || type == BinlogEvent.stop {
                try commit(closed: true)
                fileClosed = true
                continue
            }
            if !inGroup && (slice.bytes.count >= sliceBytes || slice.age >= sliceSeconds) { try commit(closed: false) }
            if slice.bytes.count >= 2 * sliceBytes + (64 << 20) {
                throw MySQLError("a transaction in \(slice.file) exceeds \(slice.bytes.count) bytes; raise capture_slice_bytes")
            }
        }
    }

    /// The slice being read: bytes from `start` of `file`; `boundary` is where its last
    /// complete transaction ends (slices are cut there).
    struct Slice {
        var file: String
        var start: UInt64
        var bytes: [UInt8] = []
        var boundary = 0
        var events = 0
        var gtidStart: GTIDState
        var gtid: GTIDState
        var boundaryGTID: GTIDState
        var firstTime: UInt32?
        var lastTime: UInt32?
        var boundaryTime: UInt32?
        let opened = Date()
        var age: Double { Date().timeIntervalSince(opened) }

        init(file: String, start: UInt64, gtid: GTIDState) {
            self.file = file
            self.start = start
            gtidStart = gtid
            self.gtid = gtid
            boundaryGTID = gtid
        }
    }
}

/// Binlog file names: BASE.NNNNNN, ordered by base then number.
enum BinlogName {
    static func split(_ name: String) -> (String, UInt64)? {
        guard let dot = name.lastIndex(of: "."), let n = UInt64(name[name.index(after: dot)...]) else { return nil }
        return (String(name[..<dot]), n)
    }

    static func compare(_ a: String, _ b: String) -> Int {
        guard let x = split(a), let y = split(b), x.0 == y.0 else { return a < b ? -1 : (a == b ? 0 : 1) }
        return x.1 < y.1 ? -1 : (x.1 == y.1 ? 0 : 1)
    }

    /// Whether `a` is the file right after `b`.
    static func follows(_ a: String, _ b: String) -> Bool {
        guard let x = split(a), let y = split(b) else { return false }
        return x.0 == y.0 && x.1 == y.1 + 1
    }
}
