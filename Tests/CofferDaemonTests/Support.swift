import CofferAgent
import CofferDaemon
import CofferFixtures
import Foundation
import Hummingbird
import ServiceLifecycle
import Synchronization
import XCTest

/// A scratch directory with a real vault, a config for the fault plugin, and helpers to
/// run the real `coffer` binary against them.
final class AgentScratch {
    let dir: String
    var vault: String { dir + "/vault" }
    var state: String { dir + "/state" }
    var configPath: String { dir + "/coffer.toml" }
    let passphrase = "agent test passphrase"
    static var products: String { BuildProducts.directory(containing: "coffer") }
    static var coffer: String { products + "/coffer" }

    init() throws {
        signal(SIGPIPE, SIG_IGN)
        dir = NSTemporaryDirectory() + "coffer-daemon-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try run(["vault", "init", "--vault", vault, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    var environment: [String: String] {
        ["COFFER_PASSPHRASE": passphrase, "COFFER_PLUGIN_PATH": Self.products, "PATH": "/usr/bin:/bin"]
    }

    /// Writes the config: the vault, an [agent] section pointing at our state dir, then `rest`.
    func writeConfig(agent: String = "", _ rest: String) throws {
        let text = """
        [vault]
        path = "\(vault)"

        [agent]
        state_dir = "\(state)"
        \(agent)

        \(rest)
        """
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func config() throws -> CofferConfig { try CofferConfig.load(path: configPath) }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    @discardableResult
    func run(_ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.coffer)
        p.arguments = args
        p.environment = environment
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let errData = Mutex<Data>(Data())
        let errReader = Thread { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
        errReader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while errReader.isExecuting || !errReader.isFinished { usleep(1000) }
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData.withLock { $0 }, as: UTF8.self))
    }

    /// The source's backups as `coffer backups --json` lists them.
    func backups(source: String) throws -> [[String: Any]] {
        let r = try run(["backups", "--vault", vault, "--source", source, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
    }

    /// Whether any manifest file in the vault is unreadable or missing blobs, per `coffer vault check`.
    func checkVault() throws -> Result { try run(["vault", "check", "--vault", vault]) }

    func makeAgent(clock: any AgentClock) throws -> Agent {
        try Agent(config: config(), options: .init(configPath: configPath, coffer: Self.coffer, environment: environment),
                  clock: clock)
    }
}

/// Polls `condition` until it holds or `seconds` pass (real time: this waits on real
/// processes, it does not stand in for the agent's clock).
func eventually(_ what: String, within seconds: Double = 60, file: StaticString = #filePath, line: UInt = #line,
                _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    XCTFail("timed out after \(seconds) s waiting for: \(what)", file: file, line: line)
    throw CancellationError()
}

/// A webhook receiver: a real HTTP server on a free loopback port that keeps every
/// JSON body POSTed to /alerts.
final class AlertReceiver: Sendable {
    private let received = Mutex<[Data]>([])
    private let boundPort = Mutex<Int?>(nil)
    private let group = Mutex<ServiceGroup?>(nil)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    var alerts: [[String: Any]] {
        received.withLock { $0 }.map { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] ?? [:] }
    }
    var url: String { "http://127.0.0.1:\(boundPort.withLock { $0 } ?? 0)/alerts" }

    func start() async throws {
        let router = Router()
        router.post("alerts") { [self] request, _ -> HTTPResponse.Status in
            let body = Data(buffer: try await request.body.collect(upTo: 1 << 20))
            self.received.withLock { $0.append(body) }
            return .ok
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { [self] channel in
                                  let port = channel.localAddress?.port
                                  self.boundPort.withLock { $0 = port }
                              })
        let group = ServiceGroup(configuration: .init(services: [app], logger: app.logger))
        self.group.withLock { $0 = group }
        task.withLock { $0 = Task { try await group.run() } }
        try await eventually("the alert receiver to listen") { self.boundPort.withLock { $0 } != nil }
    }

    func stop() async {
        await group.withLock { $0 }?.triggerGracefulShutdown()
        _ = try? await task.withLock { $0 }?.value
    }
}

extension Data {
    init(buffer: ByteBuffer) { self = Data(buffer.readableBytesView) }
}
