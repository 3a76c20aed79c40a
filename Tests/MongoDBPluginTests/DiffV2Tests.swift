import CofferMongoDB
import XCTest

/// mongod's `$v: 2` update diffs, which SecantusDB never writes: every case below is one of
/// MongoDB's own applier tests, pre-image, diff and expected post-image, from
/// mongodb/mongo src/mongo/db/update/document_diff_applier_test.cpp (DiffApplierTest.*),
/// with each diff written in its serialized form (document_diff_serialization.h: sections
/// d/u/i, `s<field>` subdiffs, array diffs `{a: true, l, u<index>, s<index>}`). As there,
/// each diff applied a second time must change nothing (oplog application is idempotent).
final class DiffV2Tests: XCTestCase {
    func i(_ v: Int32) -> BSON { .int32(v) }
    func doc(_ fields: (String, BSON)...) -> Document {
        var d = Document()
        for (k, v) in fields { d.append(k, v) }
        return d
    }
    func check(_ pre: Document, _ diff: Document, _ post: Document, file: StaticString = #filePath, line: UInt = #line) throws {
        let once = try DiffV2.apply(diff, to: pre)
        XCTAssertEqual(once, post, "first application", file: file, line: line)
        XCTAssertEqual(try DiffV2.apply(diff, to: once), post, "second application", file: file, line: line)
        // And through BSON bytes, as replay reads them.
        XCTAssertEqual(try Document(bson: once.bytes), post, file: file, line: line)
    }

    func testDeleteSimple() throws {
        try check(doc(("f1", i(1)), ("foo", i(2)), ("f2", i(3))),
                  doc(("d", .document(doc(("f1", .bool(false)), ("f2", .bool(false)), ("f3", .bool(false)))))),
                  doc(("foo", i(2))))
    }

    func testInsertSimpleMovesFieldsToTheEnd() throws {
        try check(doc(("f1", i(1)), ("foo", i(2)), ("f2", i(3))),
                  doc(("i", .document(doc(("f1", i(1)), ("newField", i(2)))))),
                  doc(("foo", i(2)), ("f2", i(3)), ("f1", i(1)), ("newField", i(2))))
    }

    func testUpdateSimpleInPlaceOrAppended() throws {
        try check(doc(("f1", i(0)), ("foo", i(2)), ("f2", i(3))),
                  doc(("u", .document(doc(("f1", i(1)), ("newField", i(2)))))),
                  doc(("f1", i(1)), ("foo", i(2)), ("f2", i(3)), ("newField", i(2))))
    }

    func testSubObjDiffSimple() throws {
        try check(doc(("obj", .document(doc(("dField", i(0)), ("iField", i(0)), ("uField", i(0))))), ("otherField", i(0))),
                  doc(("sobj", .document(doc(("d", .document(doc(("dField", .bool(false))))),
                                             ("u", .document(doc(("uField", i(2))))),
                                             ("i", .document(doc(("iField", i(1))))))))),
                  doc(("obj", .document(doc(("uField", i(2)), ("iField", i(1))))), ("otherField", i(0))))
    }

    func testSubArrayDiffSimpleWithAppend() throws {
        let diff = doc(("sarr", .document(doc(("a", .bool(true)), ("u1", i(1)), ("u4", i(2))))))
        try check(doc(("arr", .array([i(999), i(999), i(999), i(999)]))), diff,
                  doc(("arr", .array([i(999), i(1), i(999), i(999), i(2)]))))
    }

    func testSubArrayDiffSimpleWithTruncate() throws {
        let diff = doc(("sarr", .document(doc(("a", .bool(true)), ("l", i(3)), ("u1", i(1))))))
        try check(doc(("arr", .array([i(999), i(999), i(999), i(999)]))), diff,
                  doc(("arr", .array([i(999), i(1), i(999)]))))
    }

    func testSubArrayDiffSimpleWithNullPadding() throws {
        let diff = doc(("sarr", .document(doc(("a", .bool(true)), ("u3", i(1))))))
        try check(doc(("arr", .array([i(0)]))), diff, doc(("arr", .array([i(0), .null, .null, i(1)]))))
    }

    func testNestedSubObjUpdateScalar() throws {
        let diff = doc(("ssubObj", .document(doc(("ssubObj", .document(doc(("u", .document(doc(("a", i(1))))))))))))
        func nested(_ v: Int32) -> Document {
            let inner = doc(("a", i(v)))
            let middle = doc(("subObj", .document(inner)))
            return doc(("subObj", .document(middle)))
        }
        try check(nested(0), diff, nested(1))
        // Not the expected structure: a missing field stays missing, a scalar becomes null.
        try check(doc(("someOtherField", i(1))), diff, doc(("someOtherField", i(1))))
        try check(doc(("dummyA", i(1)), ("dummyB", i(2)), ("subObj", .string("scalar!")), ("dummyC", i(3)), ("dummyD", i(4))), diff,
                  doc(("dummyA", i(1)), ("dummyB", i(2)), ("subObj", .null), ("dummyC", i(3)), ("dummyD", i(4))))
        try check(doc(("dummyA", i(1)), ("dummyB", i(2)),
                      ("subObj", .document(doc(("subDummyA", i(1)), ("subObj", .string("scalar!")), ("subDummyB", i(2))))), ("dummyC", i(3))),
                  diff,
                  doc(("dummyA", i(1)), ("dummyB", i(2)),
                      ("subObj", .document(doc(("subDummyA", i(1)), ("subObj", .null), ("subDummyB", i(2))))), ("dummyC", i(3))))
    }

    func testUpdateArrayOfObjectsSubDiff() throws {
        let diff = doc(("d", .document(doc(("dFieldA", .bool(false)), ("dFieldB", .bool(false))))),
                       ("u", .document(doc(("uField", i(999))))),
                       ("sarr", .document(doc(("a", .bool(true)),
                                              ("s1", .document(doc(("u", .document(doc(("a", i(1)))))))),
                                              ("s2", .document(doc(("u", .document(doc(("b", i(2)))))))),
                                              ("s3", .document(doc(("u", .document(doc(("c", i(3)))))))),
                                              ("u4", .document(doc(("x", i(1)))))))))
        func o(_ k: String, _ v: Int32) -> BSON { .document(doc((k, i(v)))) }
        try check(doc(("uField", i(1)), ("dFieldA", i(1)), ("arr", .array([.null, o("a", 0), o("b", 0), o("c", 0)])), ("dFieldB", i(1))), diff,
                  doc(("uField", i(999)), ("arr", .array([.null, o("a", 1), o("b", 2), o("c", 3), o("x", 1)]))))
        try check(doc(("uField", i(1)), ("dFieldA", i(1)), ("arr", .array([o("a", 0), o("b", 0), o("c", 0), .document(Document())])), ("dFieldB", i(1))), diff,
                  doc(("uField", i(999)), ("arr", .array([o("a", 0), .document(doc(("b", i(0)), ("a", i(1)))),
                                                          .document(doc(("c", i(0)), ("b", i(2)))), o("c", 3), o("x", 1)]))))
        // Scalars where objects were expected become null until a later entry rewrites them.
        try check(doc(("arr", .array([i(0), i(0), i(0), i(0), o("x", 2)])), ("uField", i(1))), diff,
                  doc(("arr", .array([i(0), .null, .null, .null, o("x", 1)])), ("uField", i(999))))
        try check(doc(("arr", .array([])), ("uField", i(1))), diff,
                  doc(("arr", .array([.null, .null, .null, .null, o("x", 1)])), ("uField", i(999))))
        try check(doc(("arr", .array([i(0), .document(Document()), .document(Document()), .document(Document()), i(4), i(5), i(6)])), ("uField", i(1))), diff,
                  doc(("arr", .array([i(0), o("a", 1), o("b", 2), o("c", 3), o("x", 1), i(5), i(6)])), ("uField", i(999))))
        try check(doc(("dummyA", i(1)), ("arr", o("foo", 1)), ("dummyB", i(1))), diff,
                  doc(("dummyA", i(1)), ("arr", .null), ("dummyB", i(1)), ("uField", i(999))))
    }

    func testMalformedDiffsAreRefused() {
        XCTAssertThrowsError(try DiffV2.apply(Document(), to: Document()))
        XCTAssertThrowsError(try DiffV2.apply(doc(("a", .bool(true)), ("l", i(5))), to: Document()))
        XCTAssertThrowsError(try DiffV2.apply(doc(("d", .document(doc(("dup", .bool(false))))), ("u", .document(doc(("dup", i(1)))))), to: Document()))
    }
}
