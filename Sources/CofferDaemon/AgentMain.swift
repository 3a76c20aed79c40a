import CofferAgent
import Dispatch
import Foundation
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// `coffer agent`: takes the lock, serves HTTP, runs the scheduler until SIGTERM/SIGINT.
public enum AgentMain {
    /// Runs the agent for the config at `configPath` until a signal stops it.
    public static func run(configPath: String, coffer: String) async throws {
        let absolute = configPath.hasPrefix("/") ? configPath : FileManager.default.currentDirectoryPath + "/" + configPath
        let config = try CofferConfig.load(path: absolute)
        let store = StateStore(directory: StateStore.directory(configured: config.agent.stateDir))
        do {
            try FileManager.default.createDirectory(atPath: store.directory, withIntermediateDirectories: true)
        } catch {
            throw DaemonError("cannot create state directory \(store.directory): \(error.localizedDescription)")
        }
        let lock = try AgentLock(path: store.lockPath)
        let agent = try Agent(config: config,
                              options: .init(configPath: absolute, coffer: config.agent.coffer ?? coffer))
        // Children get default signal actions back (ChildProcess); here SIGTERM and SIGINT
        // become a graceful shutdown and a dead webhook peer must not kill the agent.
        signal(SIGPIPE, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let sources = [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                Log.line("received \(sig == SIGTERM ? "SIGTERM" : "SIGINT")")
                Task { await agent.shutdown() }
            }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }

        var server: (group: ServiceGroup, task: Task<Void, any Error>)?
        if !config.agent.listen.isEmpty {
            let listen = config.agent.listen
            let colon = listen.lastIndex(of: ":")!
            let bracketed = String(listen[..<colon])
            let host = bracketed.hasPrefix("[") && bracketed.hasSuffix("]") ? String(bracketed.dropFirst().dropLast()) : bracketed
            let port = Int(listen[listen.index(after: colon)...])!
            let app = AgentHTTP.application(agent: agent, host: host, port: port) { bound in
                Log.line("serving /status and /metrics on http://\(listen.hasPrefix("[") ? "[\(host)]" : host):\(bound)")
                await agent.setListening("\(host):\(bound)")
            }
            let group = ServiceGroup(configuration: .init(services: [app], logger: app.logger))
            server = (group, Task { try await group.run() })
        }
        await agent.run()
        if let server {
            await server.group.triggerGracefulShutdown()
            do { try await server.task.value } catch { Log.line("HTTP server: \(error)") }
        }
        withExtendedLifetime(lock) {}
    }
}
