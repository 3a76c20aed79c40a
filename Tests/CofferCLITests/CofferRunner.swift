import CofferFixtures
import Foundation
import XCTest

/// Runs the real `coffer` binary against a scratch vault.
final class CofferRunner {
    let dir: String
    var vault: String { dir + "/vault" }
    var passphrase = "cli test passphrase"

    init() throws {
        // Writing to a coffer that already exited must not kill the test process.
        signal(SIGPIPE, SIG_IGN)
        dir = NSTemporaryDirectory() + "coffer-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    static var binary: String {
        ProcessInfo.processInfo.environment["COFFER_BIN"] ?? BuildProducts.directory(containing: "coffer") + "/coffer"
    }

    struct Result {
        let status: Int32
        let stdout: Data
        let stderr: String
        var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    func environment(_ extra: [String: String]) -> [String: String] {
        var env = ["COFFER_VAULT": vault, "COFFER_PASSPHRASE": passphrase, "PATH": "/usr/bin:/bin"]
        for (k, v) in extra { env[k] = v }
        return env.filter { !$0.value.isEmpty }
    }

    /// Runs coffer with `input` on stdin (written from another thread so large inputs
    /// cannot deadlock against a full stdout pipe).
    @discardableResult
    func run(_ args: [String], input: [UInt8] = [], env: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CofferRunner.binary)
        p.arguments = args
        p.environment = environment(env)
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        p.standardError = stderr
        try p.run()
        let writer = Thread {
            input.withUnsafeBytes { b in
                var done = 0
                let fd = stdin.fileHandleForWriting.fileDescriptor
                while done < b.count {
                    let n = write(fd, b.baseAddress! + done, b.count - done)
                    if n <= 0 { break }
                    done += n
                }
            }
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let errData = StderrCollector(stderr)
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: out, stderr: errData.finish())
    }

    func put(_ data: [UInt8], args: [String] = []) throws -> String {
        let r = try run(["put", "--source", "cli"] + args, input: data)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func files(_ kind: String) -> [String] {
        let root = "\(vault)/\(kind)"
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        var out: [String] = []
        while let f = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(root)/\(f)", isDirectory: &isDir), !isDir.boolValue { out.append("\(root)/\(f)") }
        }
        return out.sorted()
    }
}

/// Reads a pipe to its end on a background thread.
final class StderrCollector: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ pipe: Pipe) {
        Thread { [self] in
            data = pipe.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    func finish() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}

/// Deterministic pseudo-random bytes.
func generated(_ count: Int, seed: UInt64) -> [UInt8] {
    var bytes = TestBytes(seed: seed)
    return bytes.bytes(count)
}
