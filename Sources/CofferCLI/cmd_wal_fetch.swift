import ArgumentParser
import CofferAgent
import CofferVault
import Foundation

struct WalFetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-fetch",
        abstract: "PostgreSQL restore_command: fetch one archived WAL file from the vault.",
        discussion: """
        Use as restore_command = 'coffer wal-fetch --config /etc/coffer/coffer.toml %f %p' \
        (coffer restore writes this for you). Exits 0 with the file at PATH, or 1 when the \
        vault does not have it (recovery asks for files that may not exist and treats that \
        as the end of the archive). After each fetch a background process fetches the next \
        --prefetch segments into a spool directory next to PATH (pg_wal/coffer-prefetch), so \
        replay finds them there instead of waiting on the vault.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source's name in the config file (default: its only postgres source).")
    var source: String?

    @Option(help: "How many following segments to fetch ahead (0 turns prefetching off).")
    var prefetch = 8

    /// Set on the background prefetcher: fill the spool after LOG, deliver nothing.
    @Flag(help: .hidden)
    var prefetchOnly = false

    @Option(help: .hidden)
    var segmentSize: String?

    @Argument(help: "The file recovery asks for (%f).")
    var log: String

    @Argument(help: "Where to put it (%p), relative to the current directory.")
    var path: String

    func run() throws {
        try reportingErrors {
            let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            let spool = (absolute as NSString).deletingLastPathComponent + "/coffer-prefetch"
            let setup = try SourceJob(options: options, name: source, engine: "postgres", plugins: 1)
            var pluginOptions = setup.source.options
            pluginOptions["log"] = log
            pluginOptions["spool"] = spool
            if prefetchOnly {
                pluginOptions["mode"] = "prefetch"
                pluginOptions["count"] = String(prefetch)
                pluginOptions["wal_segment_size"] = segmentSize
                _ = try setup.job().restore(source: setup.source.name, backups: [], options: pluginOptions, software: setup.software)
                return
            }
            pluginOptions["mode"] = "wal-fetch"
            pluginOptions["path"] = absolute
            let done = try setup.job().restore(source: setup.source.name, backups: [], options: pluginOptions,
                                               software: setup.software)
            if done.positions["missing"] != nil {
                Terminal.note("coffer: \(log) is not in the vault")
                throw ExitCode(1)
            }
            if prefetch > 0, log.count == 24, let size = done.positions["size"] {
                startPrefetcher(segmentSize: size)
            }
        }
    }

    /// Starts `coffer wal-fetch --prefetch-only LOG PATH` detached from recovery's process
    /// group, so restore_command returns at once while it works.
    private func startPrefetcher(segmentSize: String) {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return }
        var argv = [exe, "wal-fetch", "--prefetch-only", "--prefetch", String(prefetch), "--segment-size", segmentSize]
        if let source { argv += ["--source", source] }
        argv += options.arguments + [log, path]
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, 0x80) // POSIX_SPAWN_SETSID, which Glibc's module leaves out
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd: Int32 in [0, 1] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0) }
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        if posix_spawn(&pid, exe, &actions, &attributes, cargs, environ) != 0 {
            Terminal.note("coffer: could not start the WAL prefetcher; recovery goes on without it")
        }
    }
}
