import CofferAgent
import Foundation

/// What `coffer status` shows: the agent's state file (kept current by a running agent,
/// the last state of a stopped one) plus whether an agent holds the lock now.
public enum StatusReport {
    public static func load(config: CofferConfig) throws -> AgentStatus {
        let store = StateStore(directory: StateStore.directory(configured: config.agent.stateDir))
        guard var status = try store.load() else {
            throw DaemonError("no agent state in \(store.directory): no `coffer agent` has run with this config (state_dir) yet")
        }
        status.running = AgentLock.isHeld(path: store.lockPath)
        return status
    }

    public static func json(_ status: AgentStatus) throws -> String {
        String(decoding: try AgentStatus.encoder.encode(status), as: UTF8.self)
    }

    /// A table for a terminal: one row per job, then the latest alerts.
    public static func table(_ status: AgentStatus, now: Date = Date()) -> String {
        func ago(_ d: Date?) -> String {
            guard let d else { return "never" }
            let s = Int(now.timeIntervalSince(d))
            if s < 0 { return "in " + span(-s) }
            return span(s) + " ago"
        }
        func span(_ s: Int) -> String {
            if s < 120 { return "\(s)s" }
            if s < 7200 { return "\(s / 60)m" }
            if s < 172800 { return "\(s / 3600)h" }
            return "\(s / 86400)d"
        }
        func bytes(_ n: Int64?) -> String {
            guard let n else { return "-" }
            return ByteCountFormatter.string(fromByteCount: n, countStyle: .binary)
        }
        var lines: [String] = []
        let state = status.running == true ? "running (pid \(status.pid))" : "not running (last pid \(status.pid))"
        lines.append("agent: \(state), since \(ISO8601DateFormatter().string(from: status.started)), state updated \(ago(status.updated))")
        if let listen = status.listen { lines.append("http: http://\(listen)/status, /metrics") }
        if let vault = status.vault { lines.append("vault: \(vault)\(status.vaultSize.map { " (\(bytes($0)))" } ?? "")") }
        lines.append("")
        let header = ["SOURCE", "JOB", "STATE", "LAST SUCCESS", "LAST RESULT", "NEXT", "READ", "STORED"]
        let rows = status.jobs.map { j -> [String] in
            var state = j.running ? "running" : (j.retryAt != nil ? "retry \(ago(j.retryAt))" : "idle")
            if j.stale { state += ", STALE" }
            if j.kind == "capture", let lag = j.captureLag { state += ", lag \(span(Int(lag)))" }
            let result = j.lastResult.map { $0 == "ok" ? "ok" : $0.uppercased() + (j.lastExitCode.map { " (exit \($0))" } ?? "") } ?? "-"
            return [j.source, j.kind, state, ago(j.lastSuccess), result,
                    j.kind == "capture" ? "always" : ago(j.nextRun), bytes(j.bytesRead), bytes(j.bytesStored)]
        }
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        for row in all {
            lines.append(row.enumerated().map { i, c in i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
        let recent = status.alerts.suffix(5)
        if !recent.isEmpty {
            lines.append("")
            lines.append("recent alerts:")
            for a in recent { lines.append("  \(ago(a.time))  \(a.type)  \(a.message)") }
        }
        return lines.joined(separator: "\n")
    }
}
