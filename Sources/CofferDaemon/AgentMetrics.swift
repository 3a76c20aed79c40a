import CoreMetrics
import Foundation
import Prometheus

/// The agent's Prometheus metrics (names in docs/agent.md), fed through swift-metrics
/// with a factory of our own: a registry per agent, not the process-wide bootstrap, so
/// tests can run agents side by side.
final class AgentMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    init() { factory = PrometheusMetricsFactory(registry: registry) }

    private func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
        Gauge(label: name, dimensions: labels, factory: factory).record(value)
    }

    /// Counts a finished job run (result: ok, failed, gap, stopped) or a skipped one.
    func countRun(source: String, kind: String, result: String) {
        Counter(label: "coffer_job_runs_total", dimensions: [("source", source), ("kind", kind), ("result", result)],
                factory: factory).increment()
    }

    func countAlert(type: String) {
        Counter(label: "coffer_alerts_total", dimensions: [("type", type)], factory: factory).increment()
    }

    func countLog(source: String) {
        Counter(label: "coffer_capture_logs_total", dimensions: [("source", source)], factory: factory).increment()
    }

    /// Sets every gauge from a status snapshot (taken right before a scrape, so ages are current).
    func update(from status: AgentStatus) {
        gauge("coffer_agent_start_timestamp_seconds", [], status.started.timeIntervalSince1970)
        if let size = status.vaultSize { gauge("coffer_vault_size_bytes", [], Double(size)) }
        for job in status.jobs {
            let labels = [("source", job.source), ("kind", job.kind)]
            gauge("coffer_job_running", labels, job.running ? 1 : 0)
            gauge("coffer_job_stale", labels, job.stale ? 1 : 0)
            gauge("coffer_job_failed_attempts", labels, Double(job.failedAttempts))
            if let t = job.lastSuccess { gauge("coffer_job_last_success_timestamp_seconds", labels, t.timeIntervalSince1970) }
            if let t = job.lastRun { gauge("coffer_job_last_run_timestamp_seconds", labels, t.timeIntervalSince1970) }
            if let d = job.lastDuration { gauge("coffer_job_last_duration_seconds", labels, d) }
            if let b = job.bytesRead { gauge("coffer_backup_bytes_read", labels, Double(b)) }
            if let b = job.bytesStored { gauge("coffer_backup_bytes_stored", labels, Double(b)) }
            if let r = job.reductionRatio { gauge("coffer_backup_dedupe_ratio", labels, r) }
            if let lag = job.captureLag { gauge("coffer_capture_lag_seconds", [("source", job.source)], lag) }
        }
    }

    func text() -> String { registry.emitToString() }
}
