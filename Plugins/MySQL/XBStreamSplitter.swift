import CofferPluginKit
import Foundation

/// Turns mariabackup's xbstream into artifacts, one per unbroken run of a file's chunks
/// (PhysicalLayout), as it arrives: InnoDB tablespaces cut into fixed page-sized blocks,
/// everything else content-defined. Every chunk's CRC is checked; a file's chunks must come
/// in order without holes (as mbstream demands), else the backup fails.
struct XBStreamSplitter {
    let pageSize: Int

    struct Counts { var files = 0, artifacts = 0, bytes: UInt64 = 0 }

    /// What is known of each path: where its next chunk must start, whether it ended.
    private struct FileState { var next: UInt64 = 0; var ended = false }

    func run(_ reader: XBStreamReader, into sink: ArtifactSink) throws -> Counts {
        var files: [String: FileState] = [:]
        var counts = Counts()
        var run = 0
        var pending = try reader.next()
        while let chunk = pending {
            switch chunk.kind {
            case .skipped:
                try reader.payload(of: chunk) { _ in }
                pending = try reader.next()
            case .endOfFile:
                try PhysicalLayout.check(chunk.path)
                if files[chunk.path] == nil || files[chunk.path]!.ended {
                    // An empty file: mariabackup sends only its end.
                    try sink.artifact(name: PhysicalLayout.artifactName(path: chunk.path, offset: 0, run: files[chunk.path] == nil ? 0 : nextRun(&run)),
                                      chunker: "whole") { _ in }
                    counts.artifacts += 1
                    counts.files += 1
                }
                files[chunk.path] = FileState(next: 0, ended: true)
                pending = try reader.next()
            case .payload:
                try PhysicalLayout.check(chunk.path)
                var state = files[chunk.path] ?? FileState()
                if state.ended { state = FileState() }   // sent again after its end: a new file
                guard chunk.offset == state.next else {
                    throw MySQLError("mariabackup sent \(chunk.path) out of order: a chunk at offset \(chunk.offset), expected \(state.next)")
                }
                let first = files[chunk.path] == nil
                let name = PhysicalLayout.artifactName(path: chunk.path, offset: chunk.offset, run: first ? 0 : nextRun(&run))
                if chunk.offset == 0 { counts.files += 1 }
                let paged = PhysicalLayout.isPaged(chunk.path) && chunk.offset % UInt64(pageSize) == 0
                var current = chunk
                try sink.artifact(name: name, chunker: paged ? "fixed:\(pageSize)" : "cdc") { out in
                    while true {
                        try reader.payload(of: current) { try out.write($0) }
                        state.next += current.length
                        counts.bytes += current.length
                        pending = try reader.next()
                        guard let next = pending, next.kind == .payload, next.path == current.path else { return }
                        guard next.offset == state.next else {
                            throw MySQLError("mariabackup sent \(next.path) out of order: a chunk at offset \(next.offset), expected \(state.next)")
                        }
                        current = next
                    }
                }
                files[chunk.path] = state
                counts.artifacts += 1
            }
        }
        return counts
    }

    private func nextRun(_ run: inout Int) -> Int {
        run += 1
        return run
    }
}
