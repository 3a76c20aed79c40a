import CMongoC
import Foundation

public struct MongoError: Error, CustomStringConvertible {
    public let description: String
    /// The server's error code, when the server answered.
    public let code: UInt32
    public init(_ description: String, code: UInt32 = 0) {
        self.description = description
        self.code = code
    }
}

/// libmongoc's init must run once per process before anything else.
private let mongocInitialized: Bool = {
    mongoc_init()
    return true
}()

private func errorText(_ e: inout bson_error_t) -> String {
    withUnsafeBytes(of: &e.message) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}

/// A bson_t over a copy of a document's bytes, for one call into libmongoc.
private func withBSON<R>(_ d: Document, _ body: (OpaquePointer) throws -> R) throws -> R {
    try withBSON(raw: d.bytes, body)
}

private func withBSON<R>(raw bytes: [UInt8], _ body: (OpaquePointer) throws -> R) throws -> R {
    guard let b = bytes.withUnsafeBufferPointer({ bson_new_from_data($0.baseAddress, $0.count) }) else {
        throw MongoError("could not build a BSON document")
    }
    defer { bson_destroy(b) }
    return try body(b)
}

/// A bson_t's bytes (libbson hands bson_t only by pointer; its first 4 bytes are its length).
private func rawBytes(_ b: OpaquePointer) -> UnsafeRawBufferPointer {
    let data = UnsafeRawPointer(bson_get_data(b)!)
    let n = Int(Int32(littleEndian: data.loadUnaligned(as: Int32.self)))
    return UnsafeRawBufferPointer(start: data, count: n)
}

private func document(_ b: OpaquePointer) throws -> Document {
    try Document(bson: rawBytes(b))
}

/// One connection (a libmongoc client) to a server. Not shared between threads: parallel
/// work opens one each.
public final class MongoClient: @unchecked Sendable {
    let client: OpaquePointer

    public init(uri: String) throws {
        _ = mongocInitialized
        var error = bson_error_t()
        guard let parsed = mongoc_uri_new_with_error(uri, &error) else {
            throw MongoError("bad connection URI: \(errorText(&error))")
        }
        defer { mongoc_uri_destroy(parsed) }
        guard let c = mongoc_client_new_from_uri_with_error(parsed, &error) else {
            throw MongoError("cannot connect to \(MongoClient.redacted(uri)): \(errorText(&error))")
        }
        client = c
        mongoc_client_set_appname(c, "coffer-mongodb")
        mongoc_client_set_error_api(c, 2)
    }

    deinit { mongoc_client_destroy(client) }

    /// The URI without its password, for messages.
    public static func redacted(_ uri: String) -> String {
        guard let scheme = uri.range(of: "://"), let at = uri[scheme.upperBound...].firstIndex(of: "@") else { return uri }
        let user = uri[scheme.upperBound..<at]
        guard let colon = user.firstIndex(of: ":") else { return uri }
        return String(uri[..<colon]) + ":***" + String(uri[at...])
    }

    /// Runs a command on `database` and returns the reply; a reply with ok: 0 is an error.
    @discardableResult
    public func command(_ database: String, _ cmd: Document, session: MongoSession? = nil) throws -> Document {
        let reply = bson_new()!
        var error = bson_error_t()
        let ok: Bool = try withBSON(cmd) { c in
            let o = bson_new()!
            defer { bson_destroy(o) }
            if let session, !mongoc_client_session_append(session.session, o, &error) {
                return false
            }
            return mongoc_client_command_with_opts(client, database, c, nil, o, reply, &error)
        }
        defer { bson_destroy(reply) }
        guard ok else {
            throw MongoError("\(cmd.keys.first ?? "command") on \(database) failed: \(errorText(&error))", code: error.code)
        }
        let r = try document(reply)
        // Write commands report per-document failures with ok: 1.
        if let errors = r["writeErrors"]?.array, let first = errors.first?.document {
            throw MongoError("\(cmd.keys.first ?? "command") on \(database) failed: \(first["errmsg"]?.string ?? "write error")",
                             code: UInt32(truncatingIfNeeded: first["code"]?.int ?? 0))
        }
        return r
    }

    /// A cursor over a query of `database.collection`; `opts` as for the find command
    /// (projection, sort, tailable, awaitData, maxAwaitTimeMS, readConcern, ...).
    public func find(_ database: String, _ collection: String, filter: Document = Document(), opts: Document = Document()) throws -> MongoCursor {
        guard let coll = mongoc_client_get_collection(client, database, collection) else {
            throw MongoError("cannot open \(database).\(collection)")
        }
        let cursor: OpaquePointer? = try withBSON(filter) { f in
            try withBSON(opts) { o in mongoc_collection_find_with_opts(coll, f, o, nil) }
        }
        guard let cursor else {
            mongoc_collection_destroy(coll)
            throw MongoError("cannot query \(database).\(collection)")
        }
        return MongoCursor(cursor: cursor, collection: coll, what: "\(database).\(collection)")
    }

    /// A cursor over a command's cursor reply (listCollections, listIndexes, aggregate).
    public func commandCursor(_ database: String, _ cmd: Document) throws -> [Document] {
        let reply = try command(database, cmd)
        guard let cursor = reply["cursor"]?.document else { throw MongoError("\(cmd.keys.first ?? "command") returned no cursor") }
        var out = cursor["firstBatch"]?.array?.compactMap(\.document) ?? []
        var id = cursor["id"]?.int ?? 0
        let ns = cursor["ns"]?.string ?? ""
        let collection = ns.split(separator: ".", maxSplits: 1).last.map(String.init) ?? ""
        while id != 0 {
            let more = try command(database, ["getMore": .int64(id), "collection": .string(collection)])
            let c = more["cursor"]?.document
            out += c?["nextBatch"]?.array?.compactMap(\.document) ?? []
            id = c?["id"]?.int ?? 0
        }
        return out
    }

    /// Inserts raw BSON documents in one unordered bulk write.
    public func insert(_ database: String, _ collection: String, documents: [UnsafeRawBufferPointer]) throws {
        guard !documents.isEmpty else { return }
        guard let coll = mongoc_client_get_collection(client, database, collection) else {
            throw MongoError("cannot open \(database).\(collection)")
        }
        defer { mongoc_collection_destroy(coll) }
        let opts = bson_new()!
        defer { bson_destroy(opts) }
        bson_append_bool(opts, "ordered", -1, false)
        guard let bulk = mongoc_collection_create_bulk_operation_with_opts(coll, opts) else {
            throw MongoError("cannot start a bulk write on \(database).\(collection)")
        }
        defer { mongoc_bulk_operation_destroy(bulk) }
        // The documents passed validation when they were written; a validator added later
        // (collMod, validationLevel moderate) must not turn them away now.
        mongoc_bulk_operation_set_bypass_document_validation(bulk, true)
        var error = bson_error_t()
        for d in documents {
            guard let b = bson_new_from_data(d.baseAddress!.assumingMemoryBound(to: UInt8.self), d.count) else {
                throw MongoError("a document for \(database).\(collection) is not valid BSON")
            }
            defer { bson_destroy(b) }
            guard mongoc_bulk_operation_insert_with_opts(bulk, b, nil, &error) else {
                throw MongoError("insert into \(database).\(collection): \(errorText(&error))")
            }
        }
        let reply = bson_new()!
        defer { bson_destroy(reply) }
        guard mongoc_bulk_operation_execute(bulk, reply, &error) != 0 else {
            throw MongoError("insert into \(database).\(collection) failed: \(errorText(&error))", code: error.code)
        }
    }

    public func startSession() throws -> MongoSession {
        var error = bson_error_t()
        guard let s = mongoc_client_start_session(client, nil, &error) else {
            throw MongoError("cannot start a session: \(errorText(&error))")
        }
        return MongoSession(session: s)
    }
}

/// A client session, for transactions.
public final class MongoSession: @unchecked Sendable {
    let session: OpaquePointer
    init(session: OpaquePointer) { self.session = session }
    deinit { mongoc_client_session_destroy(session) }

    public func startTransaction() throws {
        var error = bson_error_t()
        guard mongoc_client_session_start_transaction(session, nil, &error) else {
            throw MongoError("cannot start a transaction: \(errorText(&error))")
        }
    }

    public func commit() throws {
        var error = bson_error_t()
        let reply = bson_new()!
        defer { bson_destroy(reply) }
        guard mongoc_client_session_commit_transaction(session, reply, &error) else {
            throw MongoError("commit failed: \(errorText(&error))")
        }
    }

    public func abort() {
        var error = bson_error_t()
        _ = mongoc_client_session_abort_transaction(session, &error)
    }
}

/// A query's cursor. `next` hands each document's raw bytes, valid until the next call.
public final class MongoCursor: @unchecked Sendable {
    let cursor: OpaquePointer
    let collection: OpaquePointer
    let what: String

    init(cursor: OpaquePointer, collection: OpaquePointer, what: String) {
        self.cursor = cursor
        self.collection = collection
        self.what = what
    }

    deinit {
        mongoc_cursor_destroy(cursor)
        mongoc_collection_destroy(collection)
    }

    /// The next document's bytes, or nil when none is there now (the end, or for a tailable
    /// cursor nothing new within maxAwaitTimeMS; see `alive`).
    public func next<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        var doc: OpaquePointer?
        if mongoc_cursor_next(cursor, &doc), let doc {
            return try body(rawBytes(doc))
        }
        var error = bson_error_t()
        if mongoc_cursor_error(cursor, &error) {
            throw MongoError("reading \(what) failed: \(errorText(&error))", code: error.code)
        }
        return nil
    }

    public func nextDocument() throws -> Document? {
        try next { try Document(bson: $0) }
    }

    /// Whether the cursor may still return documents (a tailable cursor stays alive).
    public var alive: Bool { mongoc_cursor_more(cursor) }
}
