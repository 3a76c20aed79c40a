import Foundation
import CLibPQ

/// A libpq connection, just enough for the backup functions: simple queries returning text.
final class Connection {
    let conn: OpaquePointer
    /// A walsender connection (`replication=database`): replication commands such as
    /// BASE_BACKUP, and SQL through the simple query protocol only.
    let replication: Bool

    /// - Parameter replication: open a replication connection (remote mode's BASE_BACKUP).
    init(_ conninfo: String, replication: Bool = false) throws {
        self.replication = replication
        // The conninfo goes in as dbname with expand_dbname, so a key=value string and a URI
        // both work, and the replication key added after it wins.
        let keys = replication ? ["dbname", "replication"] : ["dbname"]
        let values = replication ? [conninfo, "database"] : [conninfo]
        let cKeys = keys.map { strdup($0) } + [nil]
        let cValues = values.map { strdup($0) } + [nil]
        defer { (cKeys + cValues).forEach { free($0) } }
        let connection = cKeys.withUnsafeBufferPointer { k in
            cValues.withUnsafeBufferPointer { v in
                k.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: k.count) { kp in
                    v.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: v.count) { vp in
                        PQconnectdbParams(kp, vp, 1)
                    }
                }
            }
        }
        guard let c = connection else { throw PostgresError("libpq could not allocate a connection") }
        guard PQstatus(c) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(c))
            PQfinish(c)
            throw PostgresError("cannot connect (\(Connection.redacted(conninfo))): \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        conn = c
    }

    deinit { PQfinish(conn) }

    /// The conninfo for messages: the keys it sets, a password shown as `***`. Parsed by
    /// libpq, so a URI (`postgresql://user:secret@host/db`) is redacted as well as a
    /// key=value string; one libpq cannot parse is not shown at all.
    static func redacted(_ conninfo: String) -> String {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &error) else {
            if let error { PQfreemem(error) }
            return "connection string not shown: libpq cannot parse it"
        }
        defer { PQconninfoFree(options) }
        var parts: [String] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                let key = String(cString: keyword)
                parts.append("\(key)=\(key == "password" ? "***" : String(cString: value))")
            }
            option += 1
        }
        return parts.joined(separator: " ")
    }

    /// Rows of text values (nil for NULL).
    @discardableResult
    func query(_ sql: String, _ params: [String] = []) throws -> [[String?]] {
        let cParams = params.map { strdup($0) }
        defer { cParams.forEach { free($0) } }
        precondition(!replication || params.isEmpty, "a replication connection takes no query parameters")
        let result: OpaquePointer? = replication ? PQexec(conn, sql) : cParams.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(1, params.count)) { p in
                PQexecParams(conn, sql, Int32(params.count), nil, params.isEmpty ? nil : p, nil, nil, 0)
            }
        }
        guard let result else { throw PostgresError("out of memory running \(sql)") }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            throw PostgresError("\(sql): \(String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return (0..<PQntuples(result)).map { row in
            (0..<PQnfields(result)).map { col in
                PQgetisnull(result, row, col) == 1 ? nil : String(cString: PQgetvalue(result, row, col))
            }
        }
    }

    func value(_ sql: String, _ params: [String] = []) throws -> String {
        guard let v = try query(sql, params).first?.first ?? nil else { throw PostgresError("\(sql) returned nothing") }
        return v
    }
}

struct PostgresError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
