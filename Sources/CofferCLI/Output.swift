import ArgumentParser
import CofferAgent
import CofferVault
import Foundation

/// Runs a command body, turning vault and plugin errors into a message on stderr and
/// their exit code.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as VaultError {
        Terminal.error(error.description)
        throw ExitCode(error.exitCode)
    } catch let error as PluginError {
        Terminal.error(error.description)
        throw ExitCode(ExitCodes.pluginFailed)
    } catch let error as AgentError {
        Terminal.error(error.description)
        throw ExitCode(error.exitCode)
    }
}

enum ExitCodes {
    /// The engine plugin was missing, crashed, hung, broke the protocol or reported an error.
    static let pluginFailed: Int32 = 20
}

enum Terminal {
    static let stderrIsTTY = isatty(STDERR_FILENO) == 1

    static func error(_ message: String) {
        FileHandle.standardError.write(Data("coffer: error: \(message)\n".utf8))
    }

    static func note(_ message: String) {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, enc in
            var c = enc.singleValueContainer()
            try c.encode(Timestamp.format(date))
        }
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}

/// A one-line progress display on stderr, only when stderr is a terminal.
final class ProgressLine: @unchecked Sendable {
    private let lock = NSLock()
    private let start = Date()
    private var last = Date.distantPast
    private let label: String
    private var shown = false

    init(_ label: String) { self.label = label }

    func update(bytes: Int64) {
        show { now in
            let rate = Double(bytes) / max(now.timeIntervalSince(start), 0.001)
            return "\(label) \(Format.bytes(bytes))  \(Format.bytes(Int64(rate)))/s"
        }
    }

    func update(message: String) {
        show { _ in "\(label) \(message)" }
    }

    private func show(_ text: (Date) -> String) {
        guard Terminal.stderrIsTTY else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(last) >= 0.2 else { return }
        last = now
        FileHandle.standardError.write(Data("\r\(text(now))\u{1b}[K".utf8))
        shown = true
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if shown { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
    }
}

enum Format {
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func ratio(_ r: Double) -> String { String(format: "%.2fx", r) }

    static func time(_ d: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        f.timeZone = TimeZone.current
        return f.string(from: d)
    }

    /// Left-aligned columns for terminal tables.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
