import CofferAgent
import CofferFixtures
import CofferPluginProtocol
import CofferVault
import Foundation
import XCTest

final class PluginHostTests: XCTestCase {
    var dir = ""
    var vault: Vault!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "coffer-agent-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        vault = try Vault.create(backend: LocalBackend(path: dir + "/vault"), secret: .passphrase([1, 2, 3]),
                                 scrypt: ScryptParameters(n: 1 << 10, r: 8, p: 1))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    var productsDirectory: String { BuildProducts.directory(containing: "coffer-fault") }

    func startPlugin(timeout: Double = 30) throws -> PluginProcess {
        let path = try PluginLocator.find(engine: "fault", environment: ["COFFER_PLUGIN_PATH": productsDirectory])
        return try PluginProcess(path: path, timeout: timeout)
    }

    func backup(_ options: [String: String], timeout: Double = 30) throws -> String {
        let plugin = try startPlugin(timeout: timeout)
        return try PluginJob(vault: vault, plugin: plugin, engine: "fault")
            .backup(BackupRequest(source: "db", kind: "full", options: options))
    }

    /// What the fault plugin generates for `seed`, artifact after artifact.
    func expected(seed: UInt64, sizes: [Int]) -> [[UInt8]] {
        var bytes = TestBytes(seed: seed)
        return sizes.map { bytes.bytes($0) }
    }

    func manifests() throws -> Int { try LocalBackend(path: dir + "/vault").list(.manifests).count }

    func testBackupThroughPluginRecordsEveryArtifact() throws {
        let id = try backup(["artifacts": "base.tar:5000000:cdc,pg_control:8192:fixed:8192,wal:100:whole", "seed": "7"])
        let manifest = try vault.readManifest(id: id)
        XCTAssertEqual(manifest.engine, "fault")
        XCTAssertEqual(manifest.kind, "full")
        XCTAssertEqual(manifest.artifacts.map(\.name), ["base.tar", "pg_control", "wal"])
        XCTAssertEqual(manifest.artifacts.map(\.chunker), ["cdc", "fixed:8192", "whole"])
        XCTAssertEqual(manifest.positions["end"], "5008292")
        let reader = try ArtifactReader(vault: vault)
        for (artifact, bytes) in zip(manifest.artifacts, expected(seed: 7, sizes: [5_000_000, 8192, 100])) {
            var out: [UInt8] = []
            try reader.read(artifact) { out.append(contentsOf: $0) }
            XCTAssertEqual(out, bytes, artifact.name)
        }
    }

    func testRestoreThroughPluginFetchesArtifacts() throws {
        let id = try backup(["artifacts": "a:3000000,b:10", "seed": "9"])
        let target = dir + "/restore"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        let done = try PluginJob(vault: vault, plugin: try startPlugin(), engine: "fault")
            .restore(source: "db", backups: [id], options: ["target_dir": target])
        XCTAssertEqual(done.positions["bytes"], "3000010")
        let want = expected(seed: 9, sizes: [3_000_000, 10])
        XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/\(id)-a").map(Array.init), want[0])
        XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/\(id)-b").map(Array.init), want[1])
    }

    /// The plugins take the agent's shared memory; with COFFER_SHARED_MEMORY=off data goes
    /// through the pipe, and backup and restore give the same bytes either way.
    func testBackupAndRestoreWithAndWithoutSharedMemory() throws {
        for off in [false, true] {
            if off { setenv("COFFER_SHARED_MEMORY", "off", 1) }
            defer { unsetenv("COFFER_SHARED_MEMORY") }
            let plugin = try startPlugin()
            let id = try PluginJob(vault: vault, plugin: plugin, engine: "fault")
                .backup(BackupRequest(source: "db", kind: "full", options: ["artifacts": "a:2500000:fixed:16K,b:10", "seed": "5"]))
            XCTAssertEqual(plugin.usesSharedMemory, !off)
            let target = dir + "/restore-\(off)"
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            let restorer = try startPlugin()
            _ = try PluginJob(vault: vault, plugin: restorer, engine: "fault").restore(source: "db", backups: [id], options: ["target_dir": target])
            XCTAssertEqual(restorer.usesSharedMemory, !off)
            let want = expected(seed: 5, sizes: [2_500_000, 10])
            XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/\(id)-a").map(Array.init), want[0])
            XCTAssertEqual(FileManager.default.contents(atPath: "\(target)/\(id)-b").map(Array.init), want[1])
        }
    }

    /// Blocks lying whole in a slot of shared memory are stored from the slot (decision 024),
    /// whatever the frames' sizes; through the pipe they are copied; the bytes are the same.
    func testBlocksAreStoredFromTheirSlots() throws {
        let size = 6 << 20 | 4_321
        for (piece, off) in [(1 << 20, false), (100_000, false), (1 << 20, true)] {
            if off { setenv("COFFER_SHARED_MEMORY", "off", 1) }
            defer { unsetenv("COFFER_SHARED_MEMORY") }
            let plugin = try startPlugin()
            let (id, stats) = try PluginJob(vault: vault, plugin: plugin, engine: "fault")
                .backupWithStatistics(BackupRequest(source: "db", kind: "full",
                                                    options: ["artifacts": "a:\(size):fixed:64K", "seed": "3", "piece": "\(piece)"]))
            let what = "frames of \(piece) bytes, shared memory \(off ? "off" : "on")"
            if off {
                XCTAssertEqual(stats.lent, 0, what)
            } else if piece == 1 << 20 {
                XCTAssertEqual(stats.lent, Int64(size - 4_321), what)
            } else {
                XCTAssertGreaterThan(stats.lent, 0, what)
                XCTAssertLessThan(stats.lent, Int64(size), what)
            }
            var out: [UInt8] = []
            try ArtifactReader(vault: vault).read(try vault.readManifest(id: id).artifacts[0]) { out.append(contentsOf: $0) }
            XCTAssertTrue(out == expected(seed: 3, sizes: [size])[0], what)
        }
    }

    func assertFails(_ options: [String: String], timeout: Double = 30, reason: String,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertThrowsError(try backup(options, timeout: timeout), file: file, line: line) { error in
            guard case PluginError.failed(let plugin, let why, _) = error else {
                return XCTFail("unexpected error \(error)", file: file, line: line)
            }
            XCTAssertEqual(plugin, "coffer-fault", file: file, line: line)
            XCTAssertTrue(why.contains(reason), "'\(why)' should say '\(reason)'", file: file, line: line)
        }
        XCTAssertEqual(try manifests(), 0, "a failed plugin must leave no manifest", file: file, line: line)
        let report = try VaultChecker(vault: vault).run(readData: true)
        XCTAssertTrue(report.ok, "\(report.problems)", file: file, line: line)
    }

    func testChainRecordsTooLargeForOneFrameArriveWholeAndInOrder() throws {
        var records: [BackupRecord] = []
        let metadata = ["summary": String(repeating: "x", count: 200)]
        for i in 0..<500 {
            let m = Manifest(source: "db", engine: "fault", kind: i % 50 == 0 ? "full" : "log", parent: nil,
                             started: Date(timeIntervalSince1970: Double(i)), finished: Date(timeIntervalSince1970: Double(i)),
                             positions: ["log": "\(i)"], artifacts: [], metadata: metadata)
            records.append(BackupRecord(id: String(format: "%064d", i), manifest: m))
        }
        let budget = 16 << 10
        XCTAssertEqual(try PluginJob.batches([], budget: budget).count, 1, "a request always has its (empty) last batch")
        let batches = try PluginJob.batches(records.map {
            BackupDescription(id: $0.id, kind: $0.manifest.kind, positions: $0.manifest.positions, metadata: metadata, artifacts: [])
        }, budget: budget)
        XCTAssertGreaterThan(batches.count, 5)
        for batch in batches { XCTAssertLessThanOrEqual(try JSONEncoder().encode(batch).count, budget) }
        let report = try PluginJob(vault: vault, plugin: try startPlugin(), engine: "fault")
            .chain(source: "db", records: records, action: "verify", options: [:], frameBudget: budget)
        // About 300 bytes a record: ten or so frames of 16 KiB, reassembled by the kit.
        XCTAssertEqual(report.windows.map(\.base), records.map(\.id))
        XCTAssertEqual(report.windows.filter { $0.stream == "full" }.count, 10)
    }

    func testCrashedPluginLeavesNoManifestAndNextBackupWorks() throws {
        try assertFails(["artifacts": "a:12000000", "fault": "crash-after:9000000"], reason: "stopped unexpectedly")
        // Same vault object, same data: what the crashed backup had in flight must not be
        // taken as stored.
        let id = try backup(["artifacts": "a:12000000"])
        var out: [UInt8] = []
        try ArtifactReader(vault: vault).read(try vault.readManifest(id: id).artifacts[0]) { out.append(contentsOf: $0) }
        XCTAssertEqual(out, expected(seed: 1, sizes: [12_000_000])[0])
        let fresh = try Vault.open(backend: LocalBackend(path: dir + "/vault"), secret: .passphrase([1, 2, 3]))
        XCTAssertTrue(try VaultChecker(vault: fresh).run(readData: true).ok)
    }

    func testHungPluginIsKilledAfterTimeout() throws {
        try assertFails(["artifacts": "a:4000000", "fault": "hang-after:1000000"], timeout: 1, reason: "sent nothing for 1 s")
    }

    func testGarbageOnStdoutIsAProtocolError() throws {
        try assertFails(["artifacts": "a:4000000", "fault": "garbage-after:1000000"], reason: "broke the protocol")
    }

    func testReportedErrorIsPassedOn() throws {
        try assertFails(["artifacts": "a:4000000", "fault": "error-after:1000000"], reason: "failed: injected failure")
    }

    func testMissingPluginNamesWhereItLooked() {
        XCTAssertThrowsError(try PluginLocator.find(engine: "nosuch", environment: ["COFFER_PLUGIN_PATH": "/nonexistent"])) {
            XCTAssertTrue("\($0)".contains("coffer-nosuch in /nonexistent"), "\($0)")
        }
    }
}

final class FrameTests: XCTestCase {
    func roundTrip(_ bytes: [UInt8]) throws -> [Frame] {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        bytes.withUnsafeBytes { b in
            var done = 0
            while done < b.count { done += write(fds[1], b.baseAddress! + done, b.count - done) }
        }
        close(fds[1])
        defer { close(fds[0]) }
        let reader = FrameReader(fd: fds[0], timeout: 5)
        var frames: [Frame] = []
        while let f = try reader.next() { frames.append(f) }
        return frames
    }

    func encoded(_ frames: [Frame]) throws -> [UInt8] {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let writer = FrameWriter(fd: fds[1])
        for f in frames { try writer.send(f) }
        close(fds[1])
        defer { close(fds[0]) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    func testFramesRoundTrip() throws {
        let frames = [Frame(kind: .control, payload: try Wire.encode(Hello(software: "t"))), Frame(kind: .data, payload: []),
                      Frame(kind: .data, payload: [UInt8](repeating: 9, count: 40000))]
        let bytes = try encoded(frames)
        XCTAssertEqual(Array(bytes[0..<5]), [1] + withUnsafeBytes(of: UInt32(frames[0].payload.count).littleEndian, Array.init))
        XCTAssertEqual(try roundTrip(bytes), frames)
    }

    /// `nextLeavingData` leaves a data frame's bytes in the stream for `readData`, which
    /// hands out what the reader holds already and then reads the pipe into the caller's
    /// memory; the frames after it come out whole.
    func testDataFramesAreReadIntoTheCallersMemory() throws {
        let data = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        let hello = Frame(kind: .control, payload: try Wire.encode(Hello(software: "t")))
        let frames = [hello, Frame(kind: .data, payload: data), Frame(kind: .data, payload: []),
                      Frame(kind: .data, payload: [1, 2, 3]), hello]
        let bytes = try encoded(frames)
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        // The reader gets the bytes in two writes, so that part of the big frame is in its
        // buffer and the rest is read from the pipe.
        bytes.withUnsafeBytes { _ = write(fds[1], $0.baseAddress!, 20_000) }
        let reader = FrameReader(fd: fds[0], timeout: 5)
        XCTAssertEqual(try reader.nextLeavingData(), hello)
        bytes.withUnsafeBytes { b in
            var done = 20_000
            while done < b.count { done += write(fds[1], b.baseAddress! + done, b.count - done) }
        }
        close(fds[1])
        var received: [[UInt8]] = []
        while let frame = try reader.nextLeavingData() {
            guard frame.kind == .data else {
                XCTAssertEqual(frame, hello)
                continue
            }
            XCTAssertEqual(frame.payload, [])
            var got: [UInt8] = []
            var piece = [UInt8](repeating: 0, count: 7777)
            while true {
                let n = try piece.withUnsafeMutableBytes { try reader.readData(into: $0) }
                if n == 0 { break }
                got += piece[0..<n]
            }
            XCTAssertEqual(reader.dataLeft, 0)
            received.append(got)
        }
        XCTAssertEqual(received, [data, [], [1, 2, 3]])

        // A stream that ends inside a data frame fails the read, not a short artifact.
        var short: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&short), 0)
        defer { close(short[0]) }
        let cut: [UInt8] = [2, 10, 0, 0, 0, 1, 2]   // a data frame of 10 bytes, 2 of them sent
        _ = write(short[1], cut, cut.count)
        close(short[1])
        let truncated = FrameReader(fd: short[0], timeout: 5)
        XCTAssertEqual(try truncated.nextLeavingData()?.kind, .data)
        XCTAssertEqual(truncated.dataLeft, 10)
        var buf = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try truncated.readData(into: $0) }, 2)
        XCTAssertThrowsError(try buf.withUnsafeMutableBytes { try truncated.readData(into: $0) }) {
            XCTAssertEqual($0 as? ProtocolError, .malformed("stream ended inside a frame"))
        }
    }

    /// Gathered pieces go out as one data frame holding all of them, in order.
    func testGatheredPiecesAreOneFrame() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let big = [UInt8](repeating: 7, count: 3000)
        try FrameWriter(fd: fds[1]).sendData(parts: [[1, 2], [], big, [3]])
        close(fds[1])
        let reader = FrameReader(fd: fds[0], timeout: 5)
        XCTAssertEqual(try reader.next(), Frame(kind: .data, payload: [1, 2] + big + [3]))
        XCTAssertNil(try reader.next())
    }

    /// Data frames through shared memory: the reader hands `shared` frames on as data
    /// frames (left in the slot for `readData`, or copied out), and a sender with every
    /// slot in flight waits until the receiver gives one back.
    func testDataCrossesThroughSharedSlots() throws {
        let (sender, memoryFD, peer) = try SharedSlots.create(count: 2)
        sender.timeout = 10   // a slot never given back fails the test instead of hanging it
        let receiver = try SharedSlots.attach(count: 2, memory: memoryFD, socket: peer)
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let data = (0 ..< (4 << 20) + 12345).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        let writeEnd = fds[1]
        let writer = FrameWriter(fd: writeEnd)
        writer.shared = sender
        let sent = DispatchGroup()
        nonisolated(unsafe) var sendError: Error?
        DispatchQueue.global().async(group: sent) {
            do {
                try data.withUnsafeBytes { try writer.sendData($0) }   // five slots' worth through two
                try writer.send(Frame(kind: .control, payload: try Wire.encode(Hello(software: "t"))))
                try writer.sendData(parts: [[1, 2], [], [3]])
            } catch {
                sendError = error
            }
            close(writeEnd)
        }
        let reader = FrameReader(fd: fds[0], timeout: 10)
        reader.shared = receiver
        var got: [UInt8] = []
        var piece = [UInt8](repeating: 0, count: 7777)
        var frames = 0
        while let frame = try reader.nextLeavingData(), frame.kind == .data {
            frames += 1
            while true {
                let n = try piece.withUnsafeMutableBytes { try reader.readData(into: $0) }
                if n == 0 { break }
                got += piece[0 ..< n]
            }
        }
        XCTAssertEqual(frames, 5)
        XCTAssertEqual(got, data)
        XCTAssertEqual(try reader.next(), Frame(kind: .data, payload: [1, 2, 3]))
        XCTAssertNil(try reader.next())
        sent.wait()
        XCTAssertNil(sendError)

        // On the wire, data over `inlineLimit` is a shared frame naming a slot that holds the
        // bytes; smaller data is a data frame, in each of the three ways to send it.
        var raw: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&raw), 0)
        defer { close(raw[0]) }
        let rawWriter = FrameWriter(fd: raw[1])
        rawWriter.shared = sender
        let large = [UInt8](repeating: 7, count: FrameWriter.inlineLimit + 1)
        try rawWriter.sendData(large)
        try rawWriter.sendData([7, 8, 9] as [UInt8])
        try ([7, 8, 9] as [UInt8]).withUnsafeBytes { try rawWriter.sendData($0) }
        try rawWriter.sendData(parts: [[7], [8, 9]])
        close(raw[1])
        var wire = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(read(raw[0], &wire, wire.count), 13 + 3 * 8)
        XCTAssertEqual(Array(wire[0 ..< 5]), [3, 8, 0, 0, 0])
        let slot = Int(wire[5]) | Int(wire[6]) << 8 | Int(wire[7]) << 16 | Int(wire[8]) << 24
        XCTAssertEqual(Array(wire[9 ..< 13]), [1, 0, 1, 0])   // inlineLimit + 1, little-endian
        XCTAssertEqual(Array(receiver.slot(slot)[0 ..< large.count]), large)
        for frame in 0 ..< 3 {
            XCTAssertEqual(Array(wire[(13 + 8 * frame) ..< (21 + 8 * frame)]), [2, 3, 0, 0, 0, 7, 8, 9])
        }
    }

    /// A sender waiting for a slot from a receiver that is gone fails, as a closed pipe does.
    func testSenderWaitingForASlotFailsWhenTheReceiverIsGone() throws {
        let (sender, memoryFD, peer) = try SharedSlots.create(count: 1)
        sender.timeout = 10
        var receiver: SharedSlots? = try SharedSlots.attach(count: 1, memory: memoryFD, socket: peer)
        XCTAssertEqual(try sender.acquire(), 0)
        receiver = nil   // closes its end of the socket
        XCTAssertNil(receiver)
        XCTAssertThrowsError(try sender.acquire()) { XCTAssertEqual($0 as? ProtocolError, .closed) }
    }

    func testMalformedSharedFramesAreRejected() throws {
        let frame: [UInt8] = [3, 8, 0, 0, 0] + [7, 0, 0, 0] + [16, 0, 0, 0]   // slot 7, 16 bytes
        XCTAssertThrowsError(try roundTrip(frame)) {
            XCTAssertEqual($0 as? ProtocolError, .malformed("a shared frame, but no shared memory was agreed on"))
        }
        let (slots, memoryFD, peer) = try SharedSlots.create(count: 2)
        close(memoryFD)
        close(peer)
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        _ = write(fds[1], frame, frame.count)
        close(fds[1])
        let reader = FrameReader(fd: fds[0], timeout: 5)
        reader.shared = slots
        XCTAssertThrowsError(try reader.next()) {
            XCTAssertEqual($0 as? ProtocolError, .malformed("a shared frame names slot 7 and 16 bytes (2 slots of 1048576)"))
        }
    }

    func testMalformedFramesAreRejected() throws {
        XCTAssertThrowsError(try roundTrip([9, 0, 0, 0, 0])) { XCTAssertEqual($0 as? ProtocolError, .malformed("unknown frame kind 9")) }
        XCTAssertThrowsError(try roundTrip([2, 0xff, 0xff, 0xff, 0x7f])) {
            guard case ProtocolError.malformed(let m) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(m.contains("exceeds"))
        }
        XCTAssertThrowsError(try roundTrip([2, 10, 0, 0, 0, 1, 2])) {
            XCTAssertEqual($0 as? ProtocolError, .malformed("stream ended inside a frame"))
        }
        XCTAssertThrowsError(try Wire.type(of: Frame(kind: .control, payload: Array("not json".utf8))))
    }
}
