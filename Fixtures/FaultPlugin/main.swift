// A plugin for tests of the plugin host: it streams generated artifacts, and on request
// fails in the ways real plugins fail (crash, hang, garbage on stdout, a reported error)
// after a given number of bytes. Engine name: "fault".
import CofferFixtures
import CofferPluginKit
import CofferPluginProtocol
import Foundation

struct FaultPlugin: EnginePlugin {
    let engine = "fault"
    let capabilities = ["backup.full", "restore", "capture"]

    /// options: artifacts = "name:size:chunker,...", seed = N, fault = none | crash-after:N |
    /// hang-after:N | garbage-after:N | error-after:N (N bytes into the backup), piece = bytes
    /// a data frame (256 KiB).
    func backup(_ request: BackupRequest, into sink: ArtifactSink) throws -> BackupDone {
        let fault = request.options["fault"] ?? "none"
        let parts = fault.split(separator: ":")
        let faultAt = parts.count == 2 ? Int64(parts[1]) ?? 0 : Int64.max
        var sent: Int64 = 0
        var generator = TestBytes(seed: UInt64(request.options["seed"] ?? "1") ?? 1)
        for spec in (request.options["artifacts"] ?? "").split(separator: ",") {
            let fields = spec.split(separator: ":").map(String.init)
            let name = fields[0]
            var remaining = Int64(fields[1])!
            let chunker = fields.count > 2 ? fields[2...].joined(separator: ":") : "cdc"
            try sink.artifact(name: name, chunker: chunker) { out in
                var block = [UInt8](repeating: 0, count: Int(request.options["piece"] ?? "") ?? 256 << 10)
                while remaining > 0 {
                    let n = Int(min(Int64(block.count), remaining))
                    block.withUnsafeMutableBytes { generator.fill(UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
                    if sent + Int64(n) > faultAt {
                        try fail(String(parts[0]), sink: sink)
                    }
                    try block.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    sent += Int64(n)
                    remaining -= Int64(n)
                }
            }
        }
        return BackupDone(positions: ["end": "\(sent)"], metadata: ["generator": "xorshift64*"])
    }

    func fail(_ kind: String, sink: ArtifactSink) throws -> Never {
        PluginRunner.log("fault plugin: injecting \(kind)")
        switch kind {
        case "crash-after":
            abort()
        case "hang-after":
            while true { pause() }
        case "garbage-after":
            FileHandle.standardOutput.write(Data([0x7f, 0xff, 0xff, 0xff, 0xff, 0x00]))
            while true { pause() }
        default:
            throw FaultError.injected
        }
    }

    /// options: target_dir = DIR: writes DIR/<backup>-<artifact> for every artifact of every backup.
    func restore(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        guard let target = request.options["target_dir"] else { throw FaultError.cannotWrite("(no target_dir)") }
        var total: Int64 = 0
        for backup in request.backups.map(\.id) {
            for name in request.backups.first(where: { $0.id == backup })!.artifacts.map(\.name) {
                let path = "\(target)/\(backup)-\(name)"
                guard FileManager.default.createFile(atPath: path, contents: nil),
                      let handle = FileHandle(forWritingAtPath: path) else { throw FaultError.cannotWrite(path) }
                total += try source.fetch(backup: backup, name: name) { handle.write(Data($0)) }
                try handle.close()
            }
        }
        return RestoreDone(positions: ["bytes": "\(total)"])
    }
}

extension FaultPlugin {
    /// A log of numbered entries: log N is `log_size` bytes generated from seed N, so the
    /// same log sent again is the same content. options: logs = how many logs a capture
    /// with follow = false stores (default 3); log_size (default 10000); log_every_ms: with
    /// follow, a log every so often (default 20); quiet_ms: with follow, after the first log
    /// send nothing but `alive` for this long; altered = N: log N has other content (a
    /// conflict with a copy already stored); fail_at = N: fail while sending log N.
    /// Resumes after `last.positions.seq`.
    func capture(_ request: CaptureRequest, into sink: LogSink) throws {
        let option = { (key: String, fallback: Int) in Int(request.options[key] ?? "") ?? fallback }
        let first = (request.last?.positions["seq"].flatMap { Int($0) } ?? 0) + 1
        let count = option("logs", 3), size = option("log_size", 10000), every = option("log_every_ms", 20)
        var seq = first
        while request.follow || seq < first + count {
            if seq == option("fail_at", -1) { throw FaultError.injected }
            var bytes = TestBytes(seed: UInt64(seq) + (seq == option("altered", -1) ? 1000 : 0))
            try sink.artifact(name: "log", chunker: "whole") { try $0.write(bytes.bytes(size)) }
            try sink.commit(positions: ["log": String(format: "log-%06d", seq), "seq": String(seq)])
            if request.follow {
                let quiet = seq == first ? option("quiet_ms", 0) : 0
                let until = Date().addingTimeInterval(Double(max(quiet, every)) / 1000)
                while Date() < until {
                    try sink.alive()
                    usleep(10_000)
                }
            }
            seq += 1
        }
    }
}

extension FaultPlugin {
    /// Reports what it was handed: one window per record, its id in `base`, in order. (Not
    /// a capability: restores of this engine take the newest full backup.)
    func chain(_ request: ChainRequest) throws -> ChainReport {
        ChainReport(windows: request.backups.map { RestoreWindow(stream: $0.kind, base: $0.id, fromPosition: "", toPosition: "", fromTime: nil, toTime: nil) },
                    problems: [])
    }
}

enum FaultError: Error, CustomStringConvertible {
    case injected
    case cannotWrite(String)
    var description: String {
        switch self {
        case .injected: return "injected failure"
        case .cannotWrite(let path): return "cannot write \(path)"
        }
    }
}

PluginRunner.main(FaultPlugin(), software: "coffer-fault")
