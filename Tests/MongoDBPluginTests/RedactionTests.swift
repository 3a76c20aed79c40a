import CofferMongoDB
import XCTest

/// Connection errors name the server, never the password in its URI.
final class RedactionTests: XCTestCase {
    func testPasswordIsRedacted() {
        XCTAssertEqual(MongoClient.redacted("mongodb://backup:s3cret@db1:27017/?tls=true"), "mongodb://backup:***@db1:27017/?tls=true")
        XCTAssertEqual(MongoClient.redacted("mongodb://db1:27017/"), "mongodb://db1:27017/")
        XCTAssertEqual(MongoClient.redacted("mongodb://backup@db1/"), "mongodb://backup@db1/")
    }

    func testBadURIFailsWithoutThePassword() {
        XCTAssertThrowsError(try MongoClient(uri: "mongodb://backup:s3cret@")) { error in
            XCTAssertFalse("\(error)".contains("s3cret"), "\(error)")
        }
    }
}
