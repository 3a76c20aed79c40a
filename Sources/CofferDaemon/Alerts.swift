import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The JSON body POSTed to every webhook (docs/agent.md).
public struct AlertPayload: Codable, Sendable, Equatable {
    /// job_failed, verify_gap, stale, capture_lag.
    public var type: String
    public var source: String
    public var kind: String?
    public var time: Date
    public var message: String
    public var host: String
    public var attempts: Int?
    public var exitCode: Int32?
    /// The job's last lines on stderr.
    public var log: [String]?
    /// verify_gap: the problems verify reported (kind, detail).
    public var problems: [[String: String]]?
    public var lagSeconds: Double?
    public var lastSuccess: Date?

    public init(type: String, source: String, kind: String?, time: Date, message: String, host: String) {
        self.type = type
        self.source = source
        self.kind = kind
        self.time = time
        self.message = message
        self.host = host
    }
}

/// Delivers alerts to the configured webhooks: a JSON POST, retried with exponential
/// backoff (1, 2, 4, ... s on the agent's clock) until a 2xx or the attempts run out.
struct WebhookSender: Sendable {
    let urls: [URL]
    let attempts: Int
    let clock: any AgentClock

    /// Whether every webhook took it.
    func deliver(_ alert: AlertPayload) async -> Bool {
        guard !urls.isEmpty else { return false }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        guard let body = try? encoder.encode(alert) else { return false }
        var all = true
        for url in urls {
            var delivered = false
            for attempt in 1...max(attempts, 1) {
                if await post(body, to: url) {
                    delivered = true
                    break
                }
                if attempt == attempts { break }
                let delay = min(pow(2, Double(attempt - 1)), 60)
                Log.line("webhook \(url.absoluteString): attempt \(attempt) failed, retrying in \(Int(delay)) s")
                do { try await clock.sleep(until: clock.now().addingTimeInterval(delay)) } catch { return false }
            }
            if !delivered { Log.line("webhook \(url.absoluteString): alert \(alert.type) not delivered after \(attempts) attempts") }
            all = all && delivered
        }
        return all
    }

    private func post(_ body: Data, to url: URL) async -> Bool {
        var request = URLRequest(url: url, timeoutInterval: 10)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("coffer-agent", forHTTPHeaderField: "User-Agent")
        request.httpBody = body
        do {
            let (_, response) = try await URLSession.shared.data(for: request)
            guard let http = response as? HTTPURLResponse else { return false }
            return (200..<300).contains(http.statusCode)
        } catch {
            return false
        }
    }
}
