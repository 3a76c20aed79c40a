import CofferVault
import XCTest

/// A failed connection names where it tried to connect, but never the password: job errors
/// end up in logs, webhooks and `coffer status`.
final class ConnectionErrorTests: XCTestCase {
    func testPasswordIsNotInConnectionErrors() throws {
        let vault = try PluginVault()
        let secret = "hunter2-not-for-logs"
        let nowhere = vault.dir + "/no-server-here"
        for conninfo in ["host=\(nowhere) port=5 user=nobody password=\(secret) dbname=postgres",
                         "postgresql://nobody:\(secret)@/postgres?host=\(nowhere)&port=5"] {
            let server = FakeServer(conninfo: conninfo, dataDirectory: vault.dir)
            XCTAssertThrowsError(try vault.backup(options: server.options)) { error in
                let message = String(describing: error)
                XCTAssertTrue(message.contains("cannot connect"), message)
                XCTAssertTrue(message.contains("host=\(nowhere)"), "names where it tried: \(message)")
                XCTAssertTrue(message.contains("password=***"), message)
                XCTAssertFalse(message.contains(secret), "the password leaked: \(message)")
            }
        }
        XCTAssertEqual(try vault.vault.backend.list(.manifests).count, 0, "a failed backup recorded a manifest")
    }
}

/// Options for a server that is not there.
private struct FakeServer {
    let conninfo: String
    let dataDirectory: String
    var options: [String: String] { ["connection": conninfo, "data_directory": dataDirectory] }
}
