import CofferFixtures
import CofferVault
import Foundation
import XCTest

/// A scratch vault driven through the real `coffer` binary (and opened in-process where a
/// test needs to write manifests with chosen times).
final class PruneVault: Sendable {
    let dir: String
    var vault: String { dir + "/vault" }
    var config: String { dir + "/coffer.toml" }
    static let passphrase = "prune test passphrase"
    static var coffer: String { BuildProducts.directory(containing: "coffer") + "/coffer" }

    init(packSize: String = "1M", chunkSize: String = "64K") throws {
        signal(SIGPIPE, SIG_IGN)
        dir = NSTemporaryDirectory() + "coffer-prune-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try run(["vault", "init", "--pack-size", packSize, "--chunk-size", chunkSize]).check("vault init")
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func writeConfig(_ sources: String) throws {
        try "[vault]\npath = \"\(vault)\"\n\n\(sources)\n".write(toFile: config, atomically: true, encoding: .utf8)
    }

    func open() throws -> Vault {
        try Vault.open(backend: LocalBackend(path: vault), secret: .passphrase(Array(PruneVault.passphrase.utf8)))
    }

    struct Result {
        let status: Int32
        let stdout: Data
        let stderr: String
        /// The signal that ended the process, if one did.
        let signal: Int32?
        var text: String { String(decoding: stdout, as: UTF8.self) }

        @discardableResult
        func check(_ what: String, file: StaticString = #filePath, line: UInt = #line) -> Result {
            XCTAssertEqual(status, 0, "\(what): \(stderr)", file: file, line: line)
            return self
        }

        func json() throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: stdout) as? [String: Any], "not JSON: \(text)")
        }
    }

    /// Starts coffer; the caller waits through `finish`.
    func start(_ args: [String], input: [UInt8] = [], env: [String: String] = [:]) throws -> Running {
        try start(args, env: env) { fd in writeAll(fd, input) }
    }

    /// Starts coffer with `feed` writing its standard input (closed when `feed` returns).
    func start(_ args: [String], env: [String: String] = [:], feed: @escaping @Sendable (Int32) -> Void) throws -> Running {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: PruneVault.coffer)
        p.arguments = args
        var environment = ["COFFER_VAULT": vault, "COFFER_PASSPHRASE": PruneVault.passphrase, "PATH": "/usr/bin:/bin",
                           "COFFER_PLUGIN_PATH": BuildProducts.directory(containing: "coffer-postgres")]
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        p.standardError = stderr
        try p.run()
        return Running(process: p, feed: feed, stdin: stdin, stdout: stdout, stderr: stderr)
    }

    @discardableResult
    func run(_ args: [String], input: [UInt8] = [], env: [String: String] = [:]) throws -> Result {
        try start(args, input: input, env: env).finish()
    }

    /// `coffer put` of `bytes`; returns the backup id.
    func put(_ bytes: [UInt8], source: String) throws -> String {
        let r = try run(["put", "--source", source], input: bytes)
        guard r.status == 0 else { throw FixtureError("put exited \(r.status): \(r.stderr)") }
        return r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `coffer get` of a backup's artifact.
    func get(_ id: String) throws -> Result { try run(["get", id]) }

    func check() throws -> Result { try run(["vault", "check", "--read-data", "--json"]) }

    func files(_ kind: String) -> [String] {
        let root = "\(vault)/\(kind)"
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        var out: [String] = []
        while let f = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(root)/\(f)", isDirectory: &isDir), !isDir.boolValue {
                out.append((f as NSString).lastPathComponent)
            }
        }
        return out.sorted()
    }
}

final class Running: @unchecked Sendable {
    let process: Process
    private let out: Collector
    private let err: Collector

    init(process: Process, feed: @escaping @Sendable (Int32) -> Void, stdin: Pipe, stdout: Pipe, stderr: Pipe) {
        self.process = process
        out = Collector(stdout)
        err = Collector(stderr)
        Thread {
            feed(stdin.fileHandleForWriting.fileDescriptor)
            try? stdin.fileHandleForWriting.close()
        }.start()
    }

    func finish() -> PruneVault.Result {
        let stdout = out.finish()
        let stderr = String(decoding: err.finish(), as: UTF8.self)
        process.waitUntilExit()
        let signal = process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil
        return PruneVault.Result(status: process.terminationStatus, stdout: stdout, stderr: stderr, signal: signal)
    }
}

final class Collector: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ pipe: Pipe) {
        Thread { [self] in
            data = pipe.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    func finish() -> Data {
        done.wait()
        return data
    }
}

/// Writes every byte (until the reader goes away); returns when the pipe took them all.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { b in
        var done = 0
        while done < b.count {
            let n = write(fd, b.baseAddress! + done, b.count - done)
            if n <= 0 { break }
            done += n
        }
    }
}

/// Deterministic bytes; every seed gives other bytes (TestBytes sets the low bit of its seed,
/// so it is spread first).
func generated(_ count: Int, seed: UInt64) -> [UInt8] {
    var bytes = TestBytes(seed: seed &* 2 &+ 1)
    return bytes.bytes(count)
}

/// A vault check report, asserted clean: no problems (notes about unindexed packs or
/// temporaries are allowed: they are what an interrupted writer leaves).
func assertClean(_ r: PruneVault.Result, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertEqual(r.status, 0, "\(what): vault check failed: \(r.text) \(r.stderr)", file: file, line: line)
    let json = try r.json()
    let problems = json["problems"] as? [Any] ?? []
    XCTAssertTrue(problems.isEmpty, "\(what): \(problems)", file: file, line: line)
}
