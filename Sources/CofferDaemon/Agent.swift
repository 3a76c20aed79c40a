import CofferAgent
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The daemon: runs each source's jobs on their cron schedules as `coffer` child
/// processes, never two runs of one job at once, retries failures with exponential
/// backoff, keeps captures running, raises alerts, and keeps a status others can read.
public actor Agent {
    public struct Options: Sendable {
        /// The config file, passed to every child (absolute).
        public var configPath: String
        /// The `coffer` executable children run.
        public var coffer: String
        public var environment: [String: String]
        public init(configPath: String, coffer: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
            self.configPath = configPath
            self.coffer = coffer
            self.environment = environment
        }
    }

    let config: CofferConfig
    let settings: CofferConfig.AgentSettings
    let options: Options
    let clock: any AgentClock
    let store: StateStore
    let specs: [JobSpec]
    let metrics = AgentMetrics()
    let webhooks: WebhookSender
    private let waker = Waker()
    private let host = ProcessInfo.processInfo.hostName

    private var jobs: [String: JobStatus] = [:]
    private var children: [String: ChildProcess] = [:]
    private var queue: [String] = []
    /// Cron times up to here have been handled.
    private var checkedThrough: Date
    private var started: Date
    private var since: Date
    private var listen: String?
    private var vaultSize: Int64?
    private var alerts: [AlertRecord] = []
    private var stopping = false
    /// In-flight alert deliveries, awaited at shutdown.
    private var deliveries: [UUID: Task<Void, Never>] = [:]
    /// Per backup job: the vault's size when it started (bytes stored = its growth).
    private var vaultSizeAtStart: [String: Int64] = [:]
    /// Alerted once per episode.
    private var lagAlerted: Set<String> = []
    /// The agent clock's time the scheduler last woke (tests wait on it).
    public private(set) var lastTick: Date?
    /// The deadline the loop sleeps until, while it sleeps.
    private var sleepingUntil: Date?
    /// Something changed what is due since the last tick (a job ended); the loop was poked.
    private var needsTick = false

    private func wake() {
        needsTick = true
        waker.poke()
    }

    public init(config: CofferConfig, options: Options, clock: any AgentClock = SystemClock()) throws {
        self.config = config
        self.settings = config.agent
        self.options = options
        self.clock = clock
        self.specs = try JobSpec.plan(config)
        self.store = StateStore(directory: StateStore.directory(configured: config.agent.stateDir))
        self.webhooks = WebhookSender(urls: config.agent.webhooks.compactMap(URL.init(string:)),
                                      attempts: config.agent.webhookAttempts, clock: clock)
        let now = clock.now()
        checkedThrough = now
        started = now
        since = now
        let previous = try store.load()
        if let previous { since = previous.since }
        for spec in specs {
            var job = previous?.jobs.first { $0.id == spec.id } ?? JobStatus(source: spec.source, kind: spec.kind.rawValue)
            // What was running when the last agent ended is not running now.
            job.running = false
            job.pid = nil
            job.startedAt = nil
            job.retryAt = nil
            job.failedAttempts = 0
            job.schedule = spec.schedule?.description
            job.nextRun = spec.schedule?.next(after: now)
            jobs[spec.id] = job
        }
        alerts = previous?.alerts ?? []
        vaultSize = previous?.vaultSize
    }

    var vaultPath: String? { config.vault.path ?? options.environment["COFFER_VAULT"] }

    // MARK: status

    /// Whether the scheduler has handled the clock's time `at` and nothing runs or waits
    /// for a slot (tests driving a manual clock wait for this).
    public func isIdle(at: Date) -> Bool {
        // Handled: ticked at or after it, or asleep until later (nothing due by then).
        let handled = (lastTick.map { $0 >= at } ?? false) || (sleepingUntil.map { $0 > at } ?? false)
        guard handled && !needsTick else { return false }
        return children.keys.allSatisfy { $0.hasSuffix("/capture") } && queue.isEmpty
    }

    public func status() -> AgentStatus {
        let now = clock.now()
        var list = specs.compactMap { jobs[$0.id] }
        for i in list.indices where list[i].kind == JobKind.capture.rawValue {
            list[i].captureLag = captureLag(list[i], now: now)
        }
        return AgentStatus(pid: getpid(), host: host, config: options.configPath, vault: vaultPath, listen: listen,
                           started: started, since: since, updated: now, running: nil, vaultSize: vaultSize,
                           jobs: list, alerts: alerts)
    }

    public func metricsText() -> String {
        metrics.update(from: status())
        return metrics.text()
    }

    func setListening(_ address: String) {
        listen = address
        persist()
    }

    private func persist() {
        do { try store.save(status()) } catch { Log.line("cannot save state: \(error)") }
    }

    private func captureLag(_ job: JobStatus, now: Date) -> Double? {
        guard job.running, let since = job.lastCommitAt ?? job.startedAt else { return nil }
        return max(0, now.timeIntervalSince(since))
    }

    // MARK: the loop

    /// Runs until `shutdown()`; returns once every child has ended and the state is saved.
    public func run() async {
        try? FileManager.default.createDirectory(atPath: store.directory, withIntermediateDirectories: true)
        let now = clock.now()
        Log.line("started: \(specs.count) job\(specs.count == 1 ? "" : "s"), state in \(store.directory)")
        for spec in specs {
            if let s = spec.schedule { Log.line("\(spec.id): \(s), next at \(Self.stamp(s.next(after: now)))") }
        }
        if settings.catchUp {
            for spec in specs {
                guard let schedule = spec.schedule, let due = schedule.previous(atOrBefore: now) else { continue }
                let last = jobs[spec.id]?.lastSuccess
                if last == nil || last! < due {
                    Log.line("\(spec.id): the run due at \(Self.stamp(due)) never succeeded; running it now")
                    enqueue(spec.id)
                }
            }
        }
        for spec in specs where spec.kind == .capture { enqueue(spec.id) }
        persist()
        while !stopping {
            tick()
            let deadline = nextDeadline()
            sleepingUntil = deadline
            defer { sleepingUntil = nil }
            let clock = self.clock, waker = self.waker
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await clock.sleep(until: deadline) }
                group.addTask { await waker.wait() }
                await group.next()
                group.cancelAll()
            }
        }
        await stopChildren()
        for task in deliveries.values { await task.value }
        persist()
        Log.line("stopped")
    }

    /// One pass: start what is due, retry what waited long enough, check staleness and lag.
    private func tick() {
        needsTick = false
        let now = clock.now()
        for spec in specs {
            guard let schedule = spec.schedule else { continue }
            if let due = schedule.next(after: checkedThrough), due <= now {
                if jobs[spec.id]!.running {
                    jobs[spec.id]!.skipped += 1
                    metrics.countRun(source: spec.source, kind: spec.kind.rawValue, result: "skipped")
                    Log.line("\(spec.id): run due at \(Self.stamp(due)) skipped: the previous run is still running")
                } else {
                    enqueue(spec.id)
                }
            }
            jobs[spec.id]!.nextRun = schedule.next(after: now)
        }
        for spec in specs {
            if let at = jobs[spec.id]!.retryAt, at <= now, !jobs[spec.id]!.running {
                jobs[spec.id]!.retryAt = nil
                enqueue(spec.id)
            }
        }
        checkedThrough = now
        startQueued()
        checkStaleness(now)
        checkCaptureLag(now)
        persist()
        lastTick = now
    }

    private func nextDeadline() -> Date {
        let now = clock.now()
        var candidates: [Date] = []
        for spec in specs {
            let job = jobs[spec.id]!
            // After what the last tick checked, not after now: a run that fell due between
            // the tick and this line (the clock passing 10:00 in between) would otherwise be
            // skipped for the next one. A deadline already past wakes the loop at once.
            if let n = spec.schedule?.next(after: checkedThrough) { candidates.append(n) }
            if let r = job.retryAt { candidates.append(r) }
            if let s = staleDeadline(spec, job), !job.stale { candidates.append(s) }
            if spec.kind == .capture, job.running, !lagAlerted.contains(spec.id), let since = job.lastCommitAt ?? job.startedAt {
                candidates.append(since.addingTimeInterval(settings.captureLag))
            }
        }
        // Nothing scheduled at all: look again in a day (a wake-up comes on any change).
        return max(candidates.min() ?? now.addingTimeInterval(86400), now)
    }

    private func enqueue(_ id: String) {
        if !queue.contains(id) && !jobs[id]!.running { queue.append(id) }
    }

    private func startQueued() {
        guard !stopping else { return }
        var waiting: [String] = []
        for id in queue {
            let spec = specs.first { $0.id == id }!
            let busy = children.keys.filter { !$0.hasSuffix("/capture") }.count
            // Captures run for ever and do not take a slot.
            if spec.kind != .capture && busy >= settings.maxConcurrentJobs {
                waiting.append(id)
                continue
            }
            start(spec)
        }
        queue = waiting
    }

    // MARK: running a job

    private func start(_ spec: JobSpec) {
        let id = spec.id
        let now = clock.now()
        let arguments = spec.kind.arguments(source: spec.source, config: options.configPath)
        if spec.kind.isBackup, let vault = vaultPath { vaultSizeAtStart[id] = Self.directorySize(vault) }
        let (lines, feed) = AsyncStream.makeStream(of: String.self)
        let child: ChildProcess
        do {
            child = try ChildProcess(executable: options.coffer, arguments: arguments, environment: options.environment,
                                     stdout: { line in
                                         if let line { feed.yield(line) } else { feed.finish() }
                                     },
                                     stderr: { line in Log.line("\(id): \(line)") })
        } catch {
            Log.line("\(id): \(error)")
            jobs[id]!.lastRun = now
            jobs[id]!.lastError = "\(error)"
            failed(spec, exitCode: nil, message: "\(error)", log: [])
            return
        }
        children[id] = child
        jobs[id]!.running = true
        jobs[id]!.pid = child.pid
        jobs[id]!.startedAt = now
        jobs[id]!.retryAt = nil
        if spec.kind == .capture { lagAlerted.remove(id) }
        Log.line("\(id): started (pid \(child.pid)): coffer \(arguments.joined(separator: " "))")
        persist()
        let begin = ContinuousClock.now
        Task {
            // In order: every line is handled before the job counts as ended.
            var output = ""
            var pending = ""
            for await line in lines {
                if spec.kind == .capture {
                    pending = self.captureLine(id, pending + line + "\n")
                } else if output.utf8.count < 1 << 20 {
                    output += line + "\n"
                }
            }
            let end = await child.wait()
            let elapsed = begin.duration(to: .now)
            self.finished(spec, end, output: output,
                                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
    }

    /// One line of `coffer capture --json`: an object per committed log. Returns what to
    /// keep for the next line (an object spread over lines, as pretty-printed JSON is).
    private func captureLine(_ id: String, _ text: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            return text.utf8.count > 1 << 20 ? "" : text
        }
        var job = jobs[id]!
        job.logsCommitted = (job.logsCommitted ?? 0) + 1
        job.lastLog = object["log"] as? String ?? job.lastLog
        job.lastBackup = object["backup"] as? String ?? job.lastBackup
        job.lastCommitAt = clock.now()
        job.lastSuccess = job.lastCommitAt
        job.failedAttempts = 0
        job.stale = false
        jobs[id] = job
        lagAlerted.remove(id)
        metrics.countLog(source: job.source)
        persist()
        wake()
        return ""
    }

    private func finished(_ spec: JobSpec, _ end: ChildProcess.Termination, output: String, seconds: Double) {
        let id = spec.id
        let now = clock.now()
        children[id] = nil
        var job = jobs[id]!
        job.running = false
        job.pid = nil
        job.lastRun = now
        job.lastDuration = seconds
        job.lastExitCode = end.exitCode
        job.runs += 1
        jobs[id] = job
        defer {
            persist()
            wake()
        }
        if stopping {
            jobs[id]!.lastResult = end.succeeded ? "ok" : "stopped"
            if end.succeeded { succeeded(spec, output: output, now: now) }
            metrics.countRun(source: spec.source, kind: spec.kind.rawValue, result: jobs[id]!.lastResult!)
            Log.line("\(id): ended at shutdown (\(end.description)) after \(String(format: "%.1f", seconds)) s")
            return
        }
        if end.succeeded && spec.kind != .capture {
            succeeded(spec, output: output, now: now)
            Log.line("\(id): ok after \(String(format: "%.1f", seconds)) s")
            return
        }
        if spec.kind == .verify && end.exitCode == 23 {
            // A gap is a finding, not a transient failure: alert, no retry.
            jobs[id]!.lastResult = "gap"
            jobs[id]!.lastError = "verify found a gap, duplicate or corrupt log"
            jobs[id]!.failures += 1
            metrics.countRun(source: spec.source, kind: spec.kind.rawValue, result: "gap")
            var alert = AlertPayload(type: "verify_gap", source: spec.source, kind: spec.kind.rawValue, time: now,
                                     message: "verification of \(spec.source) found a gap, duplicate or corrupt log", host: host)
            alert.exitCode = 23
            alert.problems = Self.problems(in: output)
            alert.log = end.stderrTail
            raise(alert)
            return
        }
        let message = spec.kind == .capture && end.succeeded ? "capture ended on its own" : "\(end.description)"
        jobs[id]!.lastError = ([message] + end.stderrTail.suffix(1)).joined(separator: ": ")
        failed(spec, exitCode: end.exitCode, message: message, log: end.stderrTail)
    }

    private func succeeded(_ spec: JobSpec, output: String, now: Date) {
        let id = spec.id
        var job = jobs[id]!
        job.lastResult = "ok"
        job.lastSuccess = now
        job.lastError = nil
        job.failedAttempts = 0
        job.retryAt = nil
        job.stale = false
        if spec.kind.isBackup {
            let json = (try? JSONSerialization.jsonObject(with: Data(output.utf8))) as? [String: Any]
            job.lastBackup = json?["id"] as? String
            job.bytesRead = (json?["size"] as? NSNumber)?.int64Value
            if let vault = vaultPath {
                let size = Self.directorySize(vault)
                vaultSize = size
                // Prefer the job's own figure when it reports one; else the vault's growth.
                let stored = (json?["stored"] as? NSNumber)?.int64Value ?? max(0, size - (vaultSizeAtStart[id] ?? size))
                job.bytesStored = stored
                if let read = job.bytesRead { job.reductionRatio = Double(read) / Double(max(stored, 1)) }
            }
        }
        jobs[id] = job
        metrics.countRun(source: spec.source, kind: spec.kind.rawValue, result: "ok")
    }

    /// A failed attempt: retry after a backoff, or alert once the retries are used up.
    private func failed(_ spec: JobSpec, exitCode: Int32?, message: String, log: [String]) {
        let id = spec.id
        let now = clock.now()
        var job = jobs[id]!
        job.lastResult = "failed"
        job.failures += 1
        job.failedAttempts += 1
        metrics.countRun(source: spec.source, kind: spec.kind.rawValue, result: "failed")
        let attempt = job.failedAttempts
        let delay = min(settings.retryDelay * pow(2, Double(attempt - 1)), settings.retryMaxDelay)
        if attempt <= settings.retryAttempts {
            job.retryAt = now.addingTimeInterval(delay)
            Log.line("\(id): failed (\(message)), attempt \(attempt) of \(settings.retryAttempts + 1); retrying at \(Self.stamp(job.retryAt))")
            jobs[id] = job
            return
        }
        if spec.kind == .capture {
            // Capture must keep running: keep trying at the longest delay.
            job.retryAt = now.addingTimeInterval(settings.retryMaxDelay)
            Log.line("\(id): failed (\(message)) after \(attempt) attempt\(attempt == 1 ? "" : "s"); trying again every \(Int(settings.retryMaxDelay)) s")
        } else {
            job.retryAt = nil
            Log.line("\(id): failed (\(message)) after \(attempt) attempt\(attempt == 1 ? "" : "s"); giving up until its next scheduled run")
        }
        job.failedAttempts = 0
        jobs[id] = job
        var alert = AlertPayload(type: "job_failed", source: spec.source, kind: spec.kind.rawValue, time: now,
                                 message: "\(spec.kind.rawValue) of \(spec.source) failed after \(attempt) attempt\(attempt == 1 ? "" : "s"): \(message)",
                                 host: host)
        alert.attempts = attempt
        alert.exitCode = exitCode
        alert.log = log
        alert.lastSuccess = job.lastSuccess
        raise(alert)
    }

    // MARK: staleness and lag

    /// When a backup job becomes stale: stale_grace after its first scheduled run since
    /// the last success (or since the first agent start, for one that never succeeded).
    private func staleDeadline(_ spec: JobSpec, _ job: JobStatus) -> Date? {
        guard spec.kind.isBackup, let schedule = spec.schedule else { return nil }
        guard let due = schedule.next(after: job.lastSuccess ?? since) else { return nil }
        return due.addingTimeInterval(settings.staleGrace)
    }

    private func checkStaleness(_ now: Date) {
        for spec in specs {
            let job = jobs[spec.id]!
            guard !job.stale, let deadline = staleDeadline(spec, job), now >= deadline else { continue }
            jobs[spec.id]!.stale = true
            var alert = AlertPayload(type: "stale", source: spec.source, kind: spec.kind.rawValue, time: now,
                                     message: "\(spec.source) has no good \(spec.kind.rawValue) backup since \(job.lastSuccess.map { Self.stamp($0) } ?? "the agent first started"); one was due at \(Self.stamp(deadline.addingTimeInterval(-settings.staleGrace)))",
                                     host: host)
            alert.lastSuccess = job.lastSuccess
            raise(alert)
        }
    }

    private func checkCaptureLag(_ now: Date) {
        for spec in specs where spec.kind == .capture && !lagAlerted.contains(spec.id) {
            guard let lag = captureLag(jobs[spec.id]!, now: now), lag > settings.captureLag else { continue }
            lagAlerted.insert(spec.id)
            var alert = AlertPayload(type: "capture_lag", source: spec.source, kind: "capture", time: now,
                                     message: "capture of \(spec.source) has committed no log for \(Int(lag)) s (bound \(Int(settings.captureLag)) s)",
                                     host: host)
            alert.lagSeconds = lag
            alert.lastSuccess = jobs[spec.id]!.lastCommitAt
            raise(alert)
        }
    }

    // MARK: alerts

    private func raise(_ alert: AlertPayload) {
        Log.line("ALERT \(alert.type): \(alert.message)")
        metrics.countAlert(type: alert.type)
        let record = AlertRecord(type: alert.type, source: alert.source, kind: alert.kind, time: alert.time,
                                 message: alert.message, delivered: webhooks.urls.isEmpty ? nil : false)
        alerts.append(record)
        if alerts.count > 50 { alerts.removeFirst(alerts.count - 50) }
        guard !webhooks.urls.isEmpty else { return }
        let key = UUID()
        let webhooks = self.webhooks
        deliveries[key] = Task {
            let ok = await webhooks.deliver(alert)
            self.delivered(key, record, ok)
        }
    }

    private func delivered(_ key: UUID, _ record: AlertRecord, _ ok: Bool) {
        deliveries[key] = nil
        if let i = alerts.lastIndex(of: record) { alerts[i].delivered = ok }
        persist()
    }

    // MARK: shutdown

    /// Stops starting jobs; `run()` then stops the running ones and returns.
    public func shutdown() {
        guard !stopping else { return }
        Log.line("shutting down: \(children.count) job\(children.count == 1 ? "" : "s") running")
        stopping = true
        queue = []
        wake()
    }

    /// SIGTERM to every running job's process group; SIGKILL to what is left after the grace period.
    private func stopChildren() async {
        let running = children
        guard !running.isEmpty else { return }
        for (id, child) in running {
            Log.line("\(id): sending SIGTERM to pid \(child.pid) and its plugin")
            child.signalGroup(SIGTERM)
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(settings.shutdownGrace * 1000))
        while !children.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for (id, child) in children {
            Log.line("\(id): still running after \(settings.shutdownGrace) s; SIGKILL")
            child.signalGroup(SIGKILL)
        }
        while !children.isEmpty { try? await Task.sleep(for: .milliseconds(20)) }
    }

    // MARK: helpers

    static func stamp(_ date: Date?) -> String {
        guard let date else { return "never" }
        return ISO8601DateFormatter().string(from: date)
    }

    static func problems(in output: String) -> [[String: String]]? {
        guard let json = (try? JSONSerialization.jsonObject(with: Data(output.utf8))) as? [String: Any],
              let list = json["problems"] as? [[String: Any]] else { return nil }
        return list.map { $0.compactMapValues { $0 as? String } }
    }

    /// Bytes of the files under `path` (the vault's size on disk).
    static func directorySize(_ path: String) -> Int64 {
        guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total: Int64 = 0
        while let name = e.nextObject() as? String {
            var st = stat()
            if lstat(path + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG { total += Int64(st.st_size) }
        }
        return total
    }
}
