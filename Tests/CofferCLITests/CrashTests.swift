import Foundation
import XCTest

/// Nothing lost: a put killed at any moment or stopped by a full disk leaves a vault that
/// checks clean and records no backup, and a retry completes.
final class CrashTests: XCTestCase {
    func backupCount(_ coffer: CofferRunner) throws -> Int {
        let r = try coffer.run(["backups", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return (try JSONSerialization.jsonObject(with: r.stdout) as? [Any])?.count ?? -1
    }

    func testPutKilledAtRandomMomentsLeavesACleanVault() throws {
        signal(SIGPIPE, SIG_IGN)
        let coffer = try CofferRunner()
        XCTAssertEqual(try coffer.run(["vault", "init", "--pack-size", "1M", "--chunk-size", "64K"]).status, 0)
        let stream = generated(48 << 20, seed: 99)
        var rng = SystemRandomNumberGenerator()
        for round in 0..<5 {
            let killAt = Int.random(in: (1 << 20)..<stream.count, using: &rng)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CofferRunner.binary)
            p.arguments = ["put", "--source", "killed"]
            p.environment = coffer.environment([:])
            let stdin = Pipe()
            p.standardInput = stdin
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            // Synchronize on bytes: kill once the put has taken `killAt` bytes of its input.
            let fd = stdin.fileHandleForWriting.fileDescriptor
            var written = 0
            stream.withUnsafeBytes { b in
                while written < killAt {
                    let n = write(fd, b.baseAddress! + written, min(killAt - written, 1 << 16))
                    if n <= 0 { break }
                    written += n
                }
            }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            try? stdin.fileHandleForWriting.close()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal, "round \(round)")

            let check = try coffer.run(["vault", "check", "--read-data"])
            XCTAssertEqual(check.status, 0, "round \(round), killed after \(written) bytes: \(check.text)\(check.stderr)")
            XCTAssertEqual(try backupCount(coffer), round, "a killed put records nothing")

            let id = try coffer.put(stream, args: ["--name", "retry"])
            XCTAssertEqual(Array(try coffer.run(["get", id]).stdout), stream, "round \(round)")
        }
    }

    func testDiskFullFailsCleanly() throws {
        guard getuid() == 0 else {
            return XCTFail("this test mounts a small tmpfs to fill it and needs root (CI runs as root)")
        }
        let coffer = try CofferRunner()
        try FileManager.default.createDirectory(atPath: coffer.vault, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=24m", "tmpfs", coffer.vault]
        try mount.run()
        mount.waitUntilExit()
        XCTAssertEqual(mount.terminationStatus, 0, "mount tmpfs")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [coffer.vault]
            try? umount.run()
            umount.waitUntilExit()
        }
        XCTAssertEqual(try coffer.run(["vault", "init", "--pack-size", "1M", "--chunk-size", "64K"]).status, 0)
        let small = generated(1 << 20, seed: 5)
        let first = try coffer.put(small)

        let full = try coffer.run(["put", "--source", "big"], input: generated(64 << 20, seed: 6))
        XCTAssertEqual(full.status, 13, full.stderr)
        XCTAssertTrue(full.stderr.contains("no space left"), full.stderr)
        XCTAssertEqual(try backupCount(coffer), 1, "the failed put records nothing")
        let check = try coffer.run(["vault", "check", "--read-data"])
        XCTAssertEqual(check.status, 0, check.text + check.stderr)
        XCTAssertEqual(Array(try coffer.run(["get", first]).stdout), small, "earlier backups still restore")
    }
}
