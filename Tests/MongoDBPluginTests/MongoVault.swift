import CofferFixtures
import CofferMongoDB
import Foundation
import XCTest

/// A SecantusDB server and a fresh vault with a `mongodb` source `main` on it; runs the real
/// `coffer` CLI (which finds coffer-mongodb next to itself).
final class MongoVault {
    let work: String
    let config: String
    let server: SecantusServer
    static var coffer: String { BuildProducts.directory(containing: "coffer") + "/coffer" }

    init(serverFlags: [String] = [], sourceOptions: [String: String] = [:]) throws {
        work = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-mongo.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        config = work + "/coffer.toml"
        server = try SecantusServer(flags: serverFlags)
        try "test passphrase\n".write(toFile: work + "/passphrase", atomically: true, encoding: .utf8)
        var text = """
            [vault]
            path = "\(work)/vault"
            passphrase_file = "\(work)/passphrase"

            [source.main]
            engine = "mongodb"
            uri = "\(server.uri)"

            """
        for (k, v) in sourceOptions.sorted(by: { $0.key < $1.key }) { text += "\(k) = \"\(v)\"\n" }
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        try run("vault", "init")
    }

    deinit { try? FileManager.default.removeItem(atPath: work) }

    func client() throws -> MongoClient { try MongoClient(uri: server.uri) }

    func coffer(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try FixtureProcess.capture(MongoVault.coffer, args + ["--config", config])
    }

    @discardableResult
    func run(_ args: String...) throws -> String {
        let r = try coffer(args)
        guard r.status == 0 else { throw FixtureError("coffer \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
        return r.stdout
    }

    /// The start most scenarios share: `shop.ledger` created, `before` workload writes, a
    /// dump, `after` more writes and one capture of them. Returns the client, and the
    /// workload to go on writing with.
    func dumpedThenCaptured(before: Int = 20, after: Int) throws -> (MongoClient, Workload) {
        let c = try client()
        try c.command("shop", ["create": "ledger"])
        var w = Workload()
        for _ in 0..<before { try w.next(c) }
        try run("backup", "--source", "main")
        for _ in 0..<after { try w.next(c) }
        try run("capture", "--source", "main", "--once")
        return (c, w)
    }

    /// The positions of the newest backup of `main` of this kind, from `coffer backups --json`.
    func newestPositions(kind: String = "full") throws -> [String: String] {
        let out = try run("backups", "--source", "main", "--logs", "--json")
        guard let list = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]] else {
            throw FixtureError("coffer backups --json printed no list: \(out)")
        }
        guard let b = list.last(where: { ($0["kind"] as? String) == kind }), let p = b["positions"] as? [String: String] else {
            throw FixtureError("no \(kind) backup in \(out)")
        }
        return p
    }
}

/// Every document of a collection, by _id order.
func documents(_ client: MongoClient, _ db: String, _ coll: String) throws -> [Document] {
    let cursor = try client.find(db, coll, opts: ["sort": .document(["_id": .int32(1)])])
    var out: [Document] = []
    while let d = try cursor.nextDocument() { out.append(d) }
    return out
}

/// The newest oplog Timestamp now.
func newestTimestamp(_ client: MongoClient) throws -> Timestamp { try Oplog.newest(client).ts }
