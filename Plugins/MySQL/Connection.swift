import CMariaDB
import Foundation

struct MySQLError: Error, CustomStringConvertible {
    let description: String
    /// The server's error number, when the server reported one (1412: table definition changed).
    var code: UInt32 = 0
    init(_ description: String, code: UInt32 = 0) {
        self.description = description
        self.code = code
    }
}

/// How to reach the server, from the source's options: socket, or host and port; user
/// (default root); password_file (first line), or password.
struct ConnectionSettings: Sendable {
    var socket: String?
    var host: String?
    var port: UInt32 = 3306
    var user = "root"
    var password: String?

    init(options: [String: String]) throws {
        socket = options["socket"]
        host = options["host"]
        if let p = options["port"] {
            guard let n = UInt32(p), n > 0, n < 65536 else { throw MySQLError("port must be a TCP port number, not '\(p)'") }
            port = n
        }
        user = options["user"] ?? "root"
        if let file = options["password_file"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw MySQLError("cannot read password_file \(file)")
            }
            password = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        } else {
            password = options["password"]
        }
        guard socket != nil || host != nil else { throw MySQLError("the source needs socket or host (and port)") }
    }

    /// Arguments for MariaDB's command-line tools (mariabackup, mariadb-binlog, mariadb).
    var toolArguments: [String] {
        var args = ["--user=\(user)"]
        if let socket { args.append("--socket=\(socket)") }
        if let host { args += ["--host=\(host)", "--port=\(port)"] }
        if let password { args.append("--password=\(password)") }
        return args
    }
}

/// One Connector/C connection: text queries, rows streamed or stored.
final class Connection: @unchecked Sendable {
    let handle: UnsafeMutablePointer<MYSQL>
    let settings: ConnectionSettings

    init(_ settings: ConnectionSettings, database: String? = nil) throws {
        guard let h = mysql_init(nil) else { throw MySQLError("Connector/C could not allocate a connection") }
        self.settings = settings
        _ = "utf8mb4".withCString { mysql_options(h, MYSQL_SET_CHARSET_NAME, $0) }
        let connected = mysql_real_connect(h, settings.socket == nil ? settings.host : "localhost", settings.user,
                                           settings.password, database, settings.socket == nil ? settings.port : 0,
                                           settings.socket, UInt(CLIENT_MULTI_RESULTS))
        guard connected != nil else {
            let message = String(cString: mysql_error(h))
            mysql_close(h)
            let whereTo = settings.socket ?? "\(settings.host ?? ""):\(settings.port)"
            throw MySQLError("cannot connect to \(whereTo) as \(settings.user): \(message)")
        }
        handle = h
    }

    deinit { mysql_close(handle) }

    var isMariaDB: Bool { String(cString: mysql_get_server_info(handle)).contains("MariaDB") }
    var serverVersion: String { String(cString: mysql_get_server_info(handle)) }

    func failure(_ sql: String) -> MySQLError {
        let short = sql.count > 200 ? String(sql.prefix(200)) + "…" : sql
        return MySQLError("\(short): \(String(cString: mysql_error(handle)))", code: mysql_errno(handle))
    }

    /// Runs a statement that returns no rows (or whose rows are dropped).
    func execute(_ sql: String) throws {
        let ok = sql.withCString { mysql_real_query(handle, $0, UInt(strlen($0))) }
        guard ok == 0 else { throw failure(sql) }
        if let r = mysql_store_result(handle) { mysql_free_result(r) }
        else if mysql_field_count(handle) != 0 { throw failure(sql) }
    }

    /// Runs one statement given as bytes (a restored INSERT); the bytes need no terminator.
    func execute(bytes: UnsafeRawBufferPointer) throws {
        let ok = mysql_real_query(handle, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), UInt(bytes.count))
        guard ok == 0 else {
            throw failure(String(decoding: bytes.prefix(200), as: UTF8.self))
        }
        if let r = mysql_store_result(handle) { mysql_free_result(r) }
    }

    /// All rows, as text (nil for NULL).
    func query(_ sql: String) throws -> [[String?]] {
        let ok = sql.withCString { mysql_real_query(handle, $0, UInt(strlen($0))) }
        guard ok == 0 else { throw failure(sql) }
        guard let result = mysql_store_result(handle) else {
            if mysql_field_count(handle) != 0 { throw failure(sql) }
            return []
        }
        defer { mysql_free_result(result) }
        let n = Int(mysql_num_fields(result))
        var rows: [[String?]] = []
        while let row = mysql_fetch_row(result) {
            let lengths = mysql_fetch_lengths(result)!
            rows.append((0..<n).map { i in
                row[i].map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(lengths[i])), as: UTF8.self) }
            })
        }
        return rows
    }

    /// Named columns of the rows.
    func queryNamed(_ sql: String) throws -> [[String: String]] {
        let ok = sql.withCString { mysql_real_query(handle, $0, UInt(strlen($0))) }
        guard ok == 0 else { throw failure(sql) }
        guard let result = mysql_store_result(handle) else { return [] }
        defer { mysql_free_result(result) }
        let n = Int(mysql_num_fields(result))
        let fields = mysql_fetch_fields(result)!
        let names = (0..<n).map { String(cString: fields[$0].name) }
        var rows: [[String: String]] = []
        while let row = mysql_fetch_row(result) {
            let lengths = mysql_fetch_lengths(result)!
            var out: [String: String] = [:]
            for i in 0..<n {
                if let p = row[i] {
                    out[names[i]] = String(decoding: UnsafeRawBufferPointer(start: p, count: Int(lengths[i])), as: UTF8.self)
                }
            }
            rows.append(out)
        }
        return rows
    }

    func value(_ sql: String) throws -> String? { try query(sql).first?.first ?? nil }

    /// `name` quoted as an identifier.
    static func quote(_ name: String) -> String { "`" + name.replacingOccurrences(of: "`", with: "``") + "`" }

    /// `text` as a quoted string literal.
    func literal(_ text: String) -> String {
        var bytes = Array(text.utf8)
        var out = [CChar](repeating: 0, count: bytes.count * 2 + 1)
        let n = bytes.withUnsafeMutableBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { mysql_real_escape_string(handle, &out, $0.baseAddress, UInt($0.count)) }
        }
        return "'" + String(decoding: out.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self) + "'"
    }
}
