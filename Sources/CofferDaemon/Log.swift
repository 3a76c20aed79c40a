import Foundation

/// The agent's log: one timestamped line per event on stderr (journald keeps it).
enum Log {
    static func line(_ message: String) {
        let stamp = ISO8601DateFormatter().string(from: Date())
        FileHandle.standardError.write(Data("\(stamp) coffer-agent: \(message)\n".utf8))
    }
}
