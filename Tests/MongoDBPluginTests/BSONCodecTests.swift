import CMongoC
import CofferMongoDB
import XCTest

/// The plugin's BSON codec against libbson's own encoder: a document with every BSON type
/// (as libbson writes them) decodes and encodes back to the same bytes, so replay, which
/// decodes entries and sends documents on, never alters a value it does not interpret.
final class BSONCodecTests: XCTestCase {
    func testEveryTypeRoundTripsByteForByte() throws {
        let b = bson_new()!
        defer { bson_destroy(b) }
        var oid = bson_oid_t()
        bson_oid_init_from_string(&oid, "65a1b2c3d4e5f60718293a4b")
        var dec = bson_decimal128_t()
        bson_decimal128_from_string("1234.5678E-3", &dec)
        let sub = bson_new()!
        defer { bson_destroy(sub) }
        bson_append_int32(sub, "x", -1, 7)
        let arr = bson_new()!
        defer { bson_destroy(arr) }
        bson_append_int32(arr, "0", -1, 7)
        bson_append_double(b, "double", -1, 3.25)
        bson_append_utf8(b, "string", -1, "héllo", -1)
        bson_append_document(b, "doc", -1, sub)
        bson_append_array(b, "array", -1, arr)
        let bytes: [UInt8] = [1, 2, 3, 250]
        bson_append_binary(b, "binary", -1, BSON_SUBTYPE_UUID, bytes, 4)
        bson_append_undefined(b, "undefined", -1)
        bson_append_oid(b, "oid", -1, &oid)
        bson_append_bool(b, "bool", -1, true)
        bson_append_date_time(b, "date", -1, 1_795_730_121_113)
        bson_append_null(b, "null", -1)
        bson_append_regex(b, "regex", -1, "^a.*b$", "im")
        bson_append_dbpointer(b, "dbpointer", -1, "db.coll", &oid)
        bson_append_code(b, "code", -1, "function () { return 1 }")
        bson_append_symbol(b, "symbol", -1, "sym", -1)
        bson_append_code_with_scope(b, "codeWithScope", -1, "function () { return x }", sub)
        bson_append_int32(b, "int32", -1, -42)
        bson_append_timestamp(b, "timestamp", -1, 1_795_730_121, 3)
        bson_append_int64(b, "int64", -1, Int64.min)
        bson_append_decimal128(b, "decimal", -1, &dec)
        bson_append_minkey(b, "minkey", -1)
        bson_append_maxkey(b, "maxkey", -1)

        let data = UnsafeRawPointer(bson_get_data(b)!)
        let length = Int(Int32(littleEndian: data.loadUnaligned(as: Int32.self)))
        let original = Array(UnsafeRawBufferPointer(start: data, count: length))
        let decoded = try Document(bson: original)
        XCTAssertEqual(decoded.count, 21)
        XCTAssertEqual(decoded["string"], .string("héllo"))
        XCTAssertEqual(decoded["timestamp"], .timestamp(Timestamp(t: 1_795_730_121, i: 3)))
        XCTAssertEqual(decoded["int64"], .int64(Int64.min))
        XCTAssertEqual(decoded["array"], .array([.int32(7)]))
        XCTAssertEqual(decoded["date"], .datetime(1_795_730_121_113))
        XCTAssertEqual(decoded.bytes, original, "re-encoded byte for byte")
    }

    func testTruncatedAndOverlongInputIsRefused() throws {
        let d: Document = ["a": .int32(1), "b": "text"]
        let bytes = d.bytes
        XCTAssertThrowsError(try Document(bson: Array(bytes.dropLast())))
        XCTAssertThrowsError(try Document(bson: bytes + [0]))
        var splitter = BSONStreamSplitter()
        var seen = 0
        try (bytes + bytes.prefix(7)).withUnsafeBytes { try splitter.feed($0) { _ in seen += 1 } }
        XCTAssertEqual(seen, 1)
        XCTAssertThrowsError(try splitter.finish(), "a stream that ends inside a document")
    }
}
