import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Replays binlog slices from the vault after a restored base: the slices are put back
/// together as binlog files in a spool directory, and `mariadb-binlog` (from the base's
/// position, up to the target) is piped into `mariadb` connected to the server.
struct BinlogReplay {
    let options: [String: String]
    let base: BackupDescription
    let slices: [BackupDescription]

    /// Where replay stopped, for the restore's answer.
    func run(from source: ArtifactSource, into connection: ConnectionSettings, rewrite: [String: String] = [:]) throws -> [String: String] {
        guard let baseFile = base.positions["binlog_file"], let basePos = base.positions["binlog_pos"].flatMap(UInt64.init) else {
            throw MySQLError("the base backup records no binlog position")
        }
        let spool = NSTemporaryDirectory() + "coffer-binlog-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: spool) }
        var files: [String] = []
        for s in slices {
            guard let file = s.positions["file"], let start = s.positions["start"].flatMap(UInt64.init) else {
                throw MySQLError("log \(s.id) records no file/start")
            }
            let path = spool + "/" + file
            if files.last != file {
                guard start == 0 else { throw MySQLError("binlog \(file): the vault's slices start at \(start), not at its beginning") }
                files.append(file)
                _ = FileManager.default.createFile(atPath: path, contents: nil)
            }
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
            guard size == start else { throw MySQLError("binlog \(file): slice at \(start) does not follow the bytes before (\(size))") }
            guard let handle = FileHandle(forWritingAtPath: path) else { throw MySQLError("cannot write \(path)") }
            handle.seekToEndOfFile()
            try source.fetch(backup: s.id, name: "binlog") { try handle.write(contentsOf: Data($0)) }
            try handle.close()
        }
        guard files.first == baseFile || files.isEmpty else {
            throw MySQLError("the binlog to replay starts at \(files.first ?? ""), the base is at \(baseFile)")
        }
        if files.isEmpty { return ["replayed_to": "\(baseFile):\(basePos)"] }

        var args = ["--start-position=\(basePos)"]
        var replayFiles = files
        var reached = "the end of \(files.last!)"
        if let text = options["target_position"], let target = BinlogPosition(text) {
            guard let i = files.firstIndex(of: target.file) else { throw MySQLError("binlog \(target.file) is not among the replayed files") }
            replayFiles = Array(files[...i])
            if replayFiles.count > 1 || target.offset > basePos { args.append("--stop-position=\(target.offset)") }
            else { replayFiles = [] }
            reached = target.description
        } else if let text = options["target_gtid"] {
            let target = try BinlogReplay.groupEnd(GTIDState(text), files: files, spool: spool)
            let i = files.firstIndex(of: target.file)!
            replayFiles = Array(files[...i])
            args.append("--stop-position=\(target.offset)")
            reached = "\(text) (\(target))"
        } else if let text = options["target_time"] {
            let seconds = try BinlogChain.parseTime(text)
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = "yyyy-MM-dd HH:mm:ss"
            // mariadb-binlog reads the time in its own zone: TZ=UTC below. It stops at the
            // first event at or after it; its resolution is the second.
            args.append("--stop-datetime=\(f.string(from: Date(timeIntervalSince1970: seconds.rounded(.up))))")
            reached = text
        }
        for (old, new) in rewrite { args.append("--rewrite-db=\(old)->\(new)") }
        if let db = options["replay_database"] { args.append("--database=\(db)") }
        if replayFiles.isEmpty { return ["replayed_to": reached] }
        let decoder = try Subprocess(options["mariadb_binlog"] ?? "mariadb-binlog", args + replayFiles.map { spool + "/" + $0 },
                                     stdout: .pipe, environment: ["TZ": "UTC"])
        let client = try Subprocess(options["mariadb_client"] ?? "mariadb",
                                    ["--no-defaults", "--binary-mode"] + connection.toolArguments, stdin: .fd(decoder.output))
        let clientStatus = client.wait()
        let decoderStatus = decoder.wait()
        guard decoderStatus == 0 else { throw MySQLError("mariadb-binlog failed (exit \(decoderStatus)): \(decoder.stderrTail)") }
        guard clientStatus == 0 else { throw MySQLError("replaying the binlog failed (exit \(clientStatus)): \(client.stderrTail)") }
        return ["replayed_to": reached, "replayed_files": replayFiles.joined(separator: ",")]
    }

    /// The file position right after the transaction of each domain's target GTID (the
    /// latest of them): scanning the files event by event.
    static func groupEnd(_ target: GTIDState, files: [String], spool: String) throws -> BinlogPosition {
        var remaining = target.entries
        var last: BinlogPosition?
        for file in files {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: spool + "/" + file)))
            var at = 4
            var open: UInt32?  // the domain whose target transaction is being read
            var standalone = false
            while at + 19 <= bytes.count {
                let length = Int(UInt32(bytes[at + 9]) | UInt32(bytes[at + 10]) << 8 | UInt32(bytes[at + 11]) << 16 | UInt32(bytes[at + 12]) << 24)
                guard length >= 19, at + length <= bytes.count else { break }
                let event = BinlogEvent(bytes: Array(bytes[at..<(at + length)]))
                at += length
                switch event.type {
                case BinlogEvent.gtid:
                    let g = event.gtid
                    if let want = remaining[g.domain], want.seq == g.seq { open = g.domain; standalone = g.standalone }
                case BinlogEvent.xid where open != nil,
                     BinlogEvent.query where open != nil && (standalone || event.queryText(checksum: false).hasPrefix("COMMIT")):
                    remaining[open!] = nil
                    open = nil
                    last = BinlogPosition(file: file, offset: UInt64(at))
                    if remaining.isEmpty { return last! }
                default:
                    break
                }
            }
        }
        throw MySQLError("GTID \(GTIDState(list: Array(remaining.values)).text) is not in the binlog from the base on")
    }
}
