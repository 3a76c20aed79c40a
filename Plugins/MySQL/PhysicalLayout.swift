import Foundation

/// How a physical backup's files are named as artifacts (decision 012). mariabackup's
/// xbstream interleaves files (the redo log is copied while the data files are), so each
/// unbroken run of one file's chunks is one artifact:
/// - `files/PATH`: a file's first run, from offset 0;
/// - `more/N/OFFSET/PATH`: a later run of PATH starting at OFFSET (N numbers these runs so
///   names stay unique).
/// Runs are restored in backup order, each written at its offset. Backups before this
/// layout hold one artifact, `mariabackup.xbstream` (metadata `layout` absent).
enum PhysicalLayout {
    static let name = "files"
    static let legacyArtifact = "mariabackup.xbstream"

    static func artifactName(path: String, offset: UInt64, run: Int) -> String {
        run == 0 && offset == 0 ? "files/" + path : "more/\(run)/\(offset)/" + path
    }

    /// The file and offset an artifact holds; nil for a name not of this layout.
    static func parse(_ name: String) -> (path: String, offset: UInt64)? {
        if name.hasPrefix("files/") { return (String(name.dropFirst(6)), 0) }
        guard name.hasPrefix("more/") else { return nil }
        let parts = name.dropFirst(5).split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, Int(parts[0]) != nil, let offset = UInt64(parts[1]) else { return nil }
        return (String(parts[2]), offset)
    }

    /// A path mariabackup sent is relative, inside the backup: no "..", no leading "/".
    static func check(_ path: String) throws {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !path.hasPrefix("/"), !parts.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) else {
            throw MySQLError("refusing the file path '\(path)' from the backup (not a plain relative path)")
        }
    }

    /// InnoDB tablespaces change a page at a time: cut them page-aligned so that a second
    /// backup stores only the pages that changed. `.new` is mariabackup's copy of a table
    /// created or rebuilt during the backup (an .ibd until --prepare renames it).
    static func isPaged(_ path: String) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        if name.hasSuffix(".ibd") || name.hasSuffix(".new") { return true }
        for prefix in ["ibdata", "undo"] where name.hasPrefix(prefix) {
            return name.dropFirst(prefix.count).allSatisfy(\.isNumber)
        }
        return false
    }
}
