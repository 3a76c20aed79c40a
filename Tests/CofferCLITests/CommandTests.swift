import Foundation
import XCTest

final class KeyAndErrorTests: XCTestCase {
    func testWrongPassphraseIsRefusedAndTouchesNothing() throws {
        let coffer = try CofferRunner()
        XCTAssertEqual(try coffer.run(["vault", "init"]).status, 0)
        _ = try coffer.put(generated(100_000, seed: 1))
        func snapshot() throws -> [String: [FileAttributeKey: Any]] {
            var out: [String: [FileAttributeKey: Any]] = [:]
            for kind in ["keys", "packs", "index", "manifests"] {
                for f in coffer.files(kind) { out[f] = try FileManager.default.attributesOfItem(atPath: f) }
            }
            out["config"] = try FileManager.default.attributesOfItem(atPath: coffer.vault + "/config")
            return out
        }
        let before = try snapshot()
        for args in [["backups"], ["put", "--source", "x"], ["vault", "key", "add"], ["vault", "check"]] {
            let r = try coffer.run(args, input: [1, 2, 3], env: ["COFFER_PASSPHRASE": "wrong", "COFFER_NEW_PASSPHRASE": "n"])
            XCTAssertEqual(r.status, 10, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("no key slot opens"), r.stderr)
        }
        let after = try snapshot()
        XCTAssertEqual(Set(before.keys), Set(after.keys))
        for (f, attrs) in before {
            XCTAssertEqual(attrs[.size] as? Int, after[f]?[.size] as? Int, f)
            XCTAssertEqual(attrs[.modificationDate] as? Date, after[f]?[.modificationDate] as? Date, f)
        }
    }

    func testSecondSlotsOpenTheVaultAndTheLastCannotGo() throws {
        let coffer = try CofferRunner()
        XCTAssertEqual(try coffer.run(["vault", "init"]).status, 0)
        let data = generated(300_000, seed: 2)
        let id = try coffer.put(data)
        let keyFile = coffer.dir + "/robot.key"
        XCTAssertEqual(try coffer.run(["vault", "key", "add", "--new-key-file", keyFile, "--label", "robot"]).status, 0)
        XCTAssertEqual(try coffer.run(["vault", "key", "add"], env: ["COFFER_NEW_PASSPHRASE": "second"]).status, 0)

        struct Slot: Decodable { let id: String; let kind: String; let label: String; let current: Bool }
        let list = try coffer.run(["vault", "key", "list", "--json"])
        let slots = try JSONDecoder().decode([Slot].self, from: list.stdout)
        XCTAssertEqual(slots.count, 3)
        XCTAssertEqual(slots.filter(\.current).count, 1)
        XCTAssertEqual(slots.filter { $0.kind == "keyfile" }.map(\.label), ["robot"])

        // Each slot opens the vault and reads the data.
        let viaKey = try coffer.run(["get", id, "--key-file", keyFile], env: ["COFFER_PASSPHRASE": ""])
        XCTAssertEqual(Array(viaKey.stdout), data, viaKey.stderr)
        let viaSecond = try coffer.run(["get", id], env: ["COFFER_PASSPHRASE": "second"])
        XCTAssertEqual(Array(viaSecond.stdout), data, viaSecond.stderr)

        // Down to one slot: remove the other two while opened with the key file.
        let keyEnv = ["COFFER_PASSPHRASE": "", "COFFER_KEY_FILE": keyFile]
        let own = try coffer.run(["vault", "key", "remove", slots.first { $0.kind == "keyfile" }!.id], env: keyEnv)
        XCTAssertEqual(own.status, 2, "removing the slot in use is refused: \(own.stderr)")
        for slot in slots where slot.kind == "passphrase" {
            XCTAssertEqual(try coffer.run(["vault", "key", "remove", slot.id], env: keyEnv).status, 0)
        }
        let last = try coffer.run(["vault", "key", "remove", slots.first { $0.kind == "keyfile" }!.id], env: keyEnv)
        XCTAssertEqual(last.status, 17, last.stderr)
        XCTAssertTrue(last.stderr.contains("last key slot"), last.stderr)
        XCTAssertEqual(try coffer.run(["backups"]).status, 10, "the removed passphrase no longer opens")
        XCTAssertEqual(try coffer.run(["backups"], env: keyEnv).status, 0)
    }

    func testErrorsHaveTheirOwnExitCodes() throws {
        let coffer = try CofferRunner()
        try FileManager.default.createDirectory(atPath: coffer.vault, withIntermediateDirectories: true)
        let notVault = try coffer.run(["backups"])
        XCTAssertEqual(notVault.status, 11, notVault.stderr)
        XCTAssertTrue(notVault.stderr.contains("not a Coffer vault"), notVault.stderr)

        XCTAssertEqual(try coffer.run(["vault", "init"]).status, 0)
        XCTAssertEqual(try coffer.run(["vault", "init"]).status, 11, "init refuses an existing vault")
        XCTAssertEqual(try coffer.run(["get", "abcdef12"]).status, 16)
        let badChunker = try coffer.run(["put", "--source", "x", "--chunker", "rabin"])
        XCTAssertEqual(badChunker.status, 2)
        XCTAssertTrue(badChunker.stderr.contains("unknown chunker"), badChunker.stderr)
        XCTAssertEqual(try coffer.run(["backups"], env: ["COFFER_VAULT": ""]).status, 2, "no vault named")
        XCTAssertEqual(try coffer.run(["put", "--source", "x", "--compression", "99"]).status, 2)

        // Options beat the environment: a passphrase file on the command line wins over a
        // (wrong) key file named in the environment.
        try "cli test passphrase\n".write(toFile: coffer.dir + "/pass", atomically: true, encoding: .utf8)
        let precedence = try coffer.run(["backups", "--passphrase-file", coffer.dir + "/pass"],
                                        env: ["COFFER_PASSPHRASE": "", "COFFER_KEY_FILE": coffer.dir + "/pass"])
        XCTAssertEqual(precedence.status, 0, precedence.stderr)

        let configPath = coffer.vault + "/config"
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "\"format\":1", with: "\"format\":2").write(toFile: configPath, atomically: true, encoding: .utf8)
        let newer = try coffer.run(["backups"])
        XCTAssertEqual(newer.status, 12, newer.stderr)
        XCTAssertTrue(newer.stderr.contains("format version 2"), newer.stderr)
    }
}

final class RoundTripCLITests: XCTestCase {
    func testSizesAndChunkersThroughTheBinary() throws {
        let coffer = try CofferRunner()
        XCTAssertEqual(try coffer.run(["vault", "init"]).status, 0)
        struct Put: Decodable { let id: String; let size: Int64; let newBlobs: Int; let reusedBlobs: Int }
        var expected: [String: Int64] = [:]
        for size in [0, 1, (3 << 20) + 1] {
            let data = generated(size, seed: UInt64(size + 7))
            for chunker in ["cdc", "fixed:8K", "whole"] {
                let r = try coffer.run(["put", "--source", "rt", "--chunker", chunker, "--json"], input: data)
                XCTAssertEqual(r.status, 0, r.stderr)
                let put = try JSONDecoder().decode(Put.self, from: r.stdout)
                XCTAssertEqual(put.size, Int64(size))
                expected[put.id] = Int64(size)
                let get = try coffer.run(["get", put.id])
                XCTAssertEqual(get.status, 0, get.stderr)
                XCTAssertEqual(Array(get.stdout), data, "\(size) bytes with \(chunker)")
            }
        }
        let again = try coffer.run(["put", "--source", "rt", "--chunker", "fixed:8K", "--json"],
                                   input: generated((3 << 20) + 1, seed: (3 << 20) + 8))
        let put = try JSONDecoder().decode(Put.self, from: again.stdout)
        XCTAssertEqual(put.newBlobs, 0)
        XCTAssertGreaterThan(put.reusedBlobs, 0)

        struct Listed: Decodable { let id: String; let size: Int64; let source: String }
        let listed = try JSONDecoder().decode([Listed].self, from: try coffer.run(["backups", "--json", "--source", "rt"]).stdout)
        XCTAssertEqual(listed.count, expected.count + 1)
        for l in listed where l.id != put.id { XCTAssertEqual(expected[l.id], l.size) }

        struct Info: Decodable { struct Stats: Decodable { let manifests: Int }; let statistics: Stats; let dedupeRatio: Double }
        let info = try JSONDecoder().decode(Info.self, from: try coffer.run(["vault", "info", "--json"]).stdout)
        XCTAssertEqual(info.statistics.manifests, listed.count)
        XCTAssertGreaterThan(info.dedupeRatio, 1)
    }
}
