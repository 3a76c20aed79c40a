import ArgumentParser
import CofferVault
import Foundation

struct Put: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store standard input as a new backup and print its id.",
        discussion: """
        Chunkers: cdc (content-defined, for dumps and anything that shifts), fixed:SIZE (blocks, \
        for page-structured files that change in place, e.g. fixed:8K), whole (one blob, for log \
        segments). Nothing is recorded unless the whole stream is stored: an interrupted put \
        leaves no backup, only data a retry reuses.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source this stream belongs to (a database, a host).")
    var source: String

    @Option(help: "The artifact's name inside the backup.")
    var name: String = "stdin"

    @Option(help: ArgumentHelp("cdc, fixed:SIZE or whole.", valueName: "chunker"))
    var chunker: String = "cdc"

    @Option(help: "zstd level for this put (0 stores uncompressed); the vault's default otherwise.")
    var compression: Int?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let spec = try ChunkerSpec(parsing: chunker)
            if let compression { try CompressionLevel.validate(compression) }
            let vault = try options.open()
            let session = try BackupSession(vault: vault, compressionLevel: compression)
            let progress = ProgressLine("stored")
            let artifact = try session.store(name: name, chunker: spec, progress: { progress.update(bytes: $0) }) { buf in
                try StandardStreams.read(into: buf)
            }
            let id = try session.commit(session.manifest(source: source, artifacts: [artifact]))
            progress.finish()
            let stats = session.statistics
            if json {
                struct Out: Encodable {
                    let id: String, source: String, artifact: String, size: Int64
                    let newBlobs: Int, reusedBlobs: Int, addedBytes: Int64
                }
                try Terminal.printJSON(Out(id: id, source: source, artifact: name, size: artifact.size,
                                           newBlobs: stats.newBlobs, reusedBlobs: stats.reusedBlobs, addedBytes: stats.newStored))
            } else {
                print(id)
                if Terminal.stderrIsTTY {
                    Terminal.note("stored \(Format.bytes(artifact.size)): \(stats.newBlobs) new blobs (\(Format.bytes(stats.newStored)) added), \(stats.reusedBlobs) reused")
                }
            }
        }
    }
}

enum CompressionLevel {
    static func validate(_ level: Int) throws {
        guard (0...22).contains(level) else {
            throw VaultError.invalidArgument("compression level must be 0 (none) to 22 (zstd's highest), got \(level)")
        }
    }
}

enum StandardStreams {
    static func read(into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(STDIN_FILENO, buf.baseAddress, buf.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw VaultError.io(path: "standard input", message: String(cString: strerror(errno)))
        }
    }

    static func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(STDOUT_FILENO, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw VaultError.io(path: "standard output", message: String(cString: strerror(errno)))
            }
            done += n
        }
    }
}
