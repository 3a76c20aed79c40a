import CLibPQ
import Foundation

/// The reply to `BASE_BACKUP` on a replication connection (PostgreSQL 15 and later), read
/// through libpq: two result sets (the start position and timeline; the tablespaces), then
/// one COPY OUT whose CopyData messages each begin with a type byte: `n` a new archive
/// (archive name, tablespace location or "" for the data directory), `d` data of the current
/// archive or of the manifest, `p` progress (ignored), `m` the manifest follows; then, after
/// CopyDone, a result set with the end position.
final class BaseBackupStream: ByteSource {
    enum Part {
        case archive(name: String, location: String)
        case manifest
    }

    struct Tablespace {
        let oid: String
        let location: String
    }

    private let conn: OpaquePointer
    private(set) var start = LSN(0)
    private(set) var timeline: UInt32 = 0
    private(set) var tablespaces: [Tablespace] = []
    private var chunk: [UInt8] = []
    private var offset = 0
    /// A message that began the next part, read while looking for the current part's end.
    private var lookahead: (type: UInt8, payload: [UInt8])?
    private var copyDone = false
    /// The first result after the COPY, read when it ended (to report a server's error
    /// right away rather than as a stream cut short).
    private var afterCopy: OpaquePointer?

    deinit { if let afterCopy { PQclear(afterCopy) } }

    /// Sends `command` and reads up to the beginning of the archives.
    init(connection: Connection, command: String) throws {
        conn = connection.conn
        guard PQsendQuery(conn, command) == 1 else { throw PostgresError("cannot send BASE_BACKUP: \(lastError)") }
        let first = try result(expecting: PGRES_TUPLES_OK, "the start position")
        guard first.count == 1, let lsn = first[0][0].flatMap(LSN.init), let tli = first[0][1].flatMap(UInt32.init) else {
            throw PostgresError("BASE_BACKUP sent no start position")
        }
        start = lsn
        timeline = tli
        tablespaces = try result(expecting: PGRES_TUPLES_OK, "the tablespace list").compactMap { row in
            guard let oid = row[0], let location = row[1] else { return nil }   // the data directory's row
            return Tablespace(oid: oid, location: location)
        }
        _ = try result(expecting: PGRES_COPY_OUT, "the backup's COPY stream")
    }

    /// The next archive or the manifest, after skipping what was not read of the current
    /// one; nil once the COPY stream is over.
    func nextPart() throws -> Part? {
        while try read(max: 1 << 20) != nil {}
        guard let message = try lookahead ?? nextMessage() else { return nil }
        lookahead = nil
        switch message.type {
        case UInt8(ascii: "n"):
            let fields = message.payload.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count >= 2 else { throw PostgresError("BASE_BACKUP sent a malformed new-archive message") }
            return .archive(name: String(decoding: fields[0], as: UTF8.self), location: String(decoding: fields[1], as: UTF8.self))
        case UInt8(ascii: "m"):
            return .manifest
        default:
            throw PostgresError("BASE_BACKUP sent data (type '\(Character(Unicode.Scalar(message.type)))') before any archive")
        }
    }

    /// The next bytes of the current archive or manifest; nil at its end.
    func read(max: Int) throws -> ArraySlice<UInt8>? {
        while offset == chunk.count {
            guard lookahead == nil, let message = try nextMessage() else { return nil }
            switch message.type {
            case UInt8(ascii: "d"):
                chunk = message.payload
                offset = 0
            case UInt8(ascii: "p"):
                continue
            default:
                lookahead = message
                return nil
            }
        }
        let n = min(max, chunk.count - offset)
        defer { offset += n }
        return chunk[offset..<offset + n]
    }

    /// After the last part: the end position and its timeline.
    func finish() throws -> (stop: LSN, timeline: UInt32) {
        while try nextPart() != nil {}
        var stop: (LSN, UInt32)?
        while let result = afterCopy ?? PQgetResult(conn) {
            afterCopy = nil
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            if status == PGRES_TUPLES_OK, PQntuples(result) == 1, PQnfields(result) >= 2,
               let lsn = LSN(String(cString: PQgetvalue(result, 0, 0))), let tli = UInt32(String(cString: PQgetvalue(result, 0, 1))) {
                stop = (lsn, tli)
            } else if status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK {
                throw PostgresError("BASE_BACKUP failed at its end: \(String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
        guard let stop else { throw PostgresError("BASE_BACKUP sent no end position") }
        return stop
    }

    private func nextMessage() throws -> (type: UInt8, payload: [UInt8])? {
        if copyDone { return nil }
        var buffer: UnsafeMutablePointer<CChar>?
        let length = PQgetCopyData(conn, &buffer, 0)
        if length == -1 {
            copyDone = true
            // The server ends the COPY early when the backup fails (a WAL segment already
            // removed, the server shutting down): its error comes as the next result.
            afterCopy = PQgetResult(conn)
            if let result = afterCopy, PQresultStatus(result) == PGRES_FATAL_ERROR || PQresultStatus(result) == PGRES_BAD_RESPONSE {
                throw PostgresError("BASE_BACKUP failed: \(String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            return nil
        }
        guard length > 0, let buffer else {
            // -2: the connection failed or the server reported an error (it sends ErrorResponse
            // and the copy ends): the message is in the result.
            var message = lastError
            if let result = PQgetResult(conn) {
                message = String(cString: PQresultErrorMessage(result))
                PQclear(result)
            }
            throw PostgresError("BASE_BACKUP failed: \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        defer { PQfreemem(buffer) }
        let raw = UnsafeRawPointer(buffer)
        return (raw.load(as: UInt8.self), Array(UnsafeRawBufferPointer(start: raw + 1, count: Int(length) - 1)))
    }

    /// The next result, which must have `status`; its rows as text.
    private func result(expecting status: ExecStatusType, _ what: String) throws -> [[String?]] {
        guard let result = PQgetResult(conn) else { throw PostgresError("BASE_BACKUP ended before \(what)") }
        defer { PQclear(result) }
        guard PQresultStatus(result) == status else {
            throw PostgresError("BASE_BACKUP failed: \(String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return (0..<PQntuples(result)).map { row in
            (0..<PQnfields(result)).map { col in
                PQgetisnull(result, row, col) == 1 ? nil : String(cString: PQgetvalue(result, row, col))
            }
        }
    }

    private var lastError: String { String(cString: PQerrorMessage(conn)) }
}
