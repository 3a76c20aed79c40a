import ArgumentParser
import CofferAgent
import CofferPluginProtocol
import CofferVault
import Dispatch
import Foundation
import Synchronization

struct Capture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store a source's log continuously as the server writes it.",
        discussion: """
        For engines whose log is pulled from the server (capability "capture": MariaDB/MySQL \
        binlog streaming, MongoDB oplog tailing). The plugin resumes right after the last log \
        the vault holds for the source and closes a log every few seconds or at each rotation; \
        each is durable in the vault before the next begins. Runs until SIGINT or SIGTERM \
        (what was not yet closed is taken again by the next run), or with --once until it has \
        stored all the server has now. PostgreSQL archives through `coffer wal-push` instead.

        Prints one line per stored log; with --json one JSON object per line \
        ({"log", "backup", "size", "positions", "finished"}).
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source's name in the config file.")
    var source: String

    @Flag(help: "Store what the server has now, then exit (instead of following it).")
    var once = false

    @Flag(help: "Print one JSON object per stored log.")
    var json = false

    func run() throws {
        try reportingErrors {
            let sourceJob = try SourceJob(options: options, name: source, plugins: 1)
            var stored = 0
            try CaptureRun(job: try sourceJob.job(), source: sourceJob.source).run(follow: !once) { log in
                stored += 1
                // Unbuffered: whoever reads the pipe (the agent daemon) hears of each log at once.
                FileHandle.standardOutput.write(Data(((json ? CapturedLogLine(log).json : CapturedLogLine(log).text) + "\n").utf8))
            }
            if !json { Terminal.note("stored \(stored) log\(stored == 1 ? "" : "s")") }
        }
    }
}

/// A capture from the command line: stops on SIGINT/SIGTERM (the plugin gets SIGTERM, and
/// SIGKILL 10 s later if it is still there); `each` hears of every log once it is stored.
struct CaptureRun {
    let job: PluginJob
    let source: CofferConfig.Source

    func run(follow: Bool, each: (PluginJob.CapturedLog) -> Void) throws {
        let stopping = Atomic<Bool>(false)
        let plugin = job.plugin
        var handlers: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let handler = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            handler.setEventHandler {
                guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
                plugin.terminate()
                DispatchQueue.global().asyncAfter(deadline: .now() + 10) { plugin.kill() }
            }
            handler.resume()
            handlers.append(handler)
        }
        defer {
            for h in handlers { h.cancel() }
            signal(SIGINT, SIG_DFL)
            signal(SIGTERM, SIG_DFL)
        }
        let request = CaptureRequest(source: source.name, options: source.options, follow: follow,
                                     last: try PluginJob.lastLog(of: source.name, in: job.vault))
        _ = try job.capture(request, software: "coffer \(Coffer.configuration.version)",
                            stopRequested: { stopping.load(ordering: .sequentiallyConsistent) }, committed: each)
    }
}

/// How a stored log is printed: a tab-separated line, or one compact JSON object.
struct CapturedLogLine: Encodable {
    let log: String, backup: String, size: Int64, positions: [String: String], finished: String

    init(_ captured: PluginJob.CapturedLog) {
        log = captured.manifest.positions["log"] ?? ""
        backup = captured.id
        size = captured.manifest.logicalSize
        positions = captured.manifest.positions
        finished = Timestamp.format(captured.manifest.finished)
    }

    var text: String { "\(log)\t\(backup.prefix(12))\t\(size) bytes" }

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "{}"
    }
}
