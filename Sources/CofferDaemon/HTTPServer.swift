import Foundation
import Hummingbird
import Logging
import NIOCore

/// GET /metrics (Prometheus text format), GET /status (the status JSON), GET /health.
enum AgentHTTP {
    static func application(agent: Agent, host: String, port: Int,
                            onRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            let text = await agent.metricsText()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("status") { _, _ -> Response in
            let status = await agent.status()
            let data = (try? AgentStatus.encoder.encode(status)) ?? Data()
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("health") { _, _ in "ok\n" }
        return Application(router: router,
                           configuration: .init(address: .hostname(host, port: port), serverName: "coffer-agent"),
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
                           logger: { var l = Logger(label: "coffer-agent.http"); l.logLevel = .warning; return l }())
    }
}
