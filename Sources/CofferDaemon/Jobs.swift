import CofferAgent
import Foundation

/// What the agent runs for a source; each is one `coffer` subcommand.
public enum JobKind: String, Codable, Sendable, CaseIterable {
    case full, incremental, log, verify, prune, capture

    var isBackup: Bool { self == .full || self == .incremental || self == .log }

    /// The `coffer` arguments (after the global ones) for this job of `source`.
    func arguments(source: String, config: String) -> [String] {
        let common = ["--config", config, "--source", source, "--json"]
        switch self {
        case .full, .incremental, .log: return ["backup"] + common + ["--type", rawValue]
        case .verify: return ["verify"] + common
        case .prune: return ["prune"] + common
        case .capture: return ["capture"] + common
        }
    }
}

/// One job of the plan: a source, a kind and when it runs (capture: always).
public struct JobSpec: Sendable {
    public let source: String
    public let kind: JobKind
    public let schedule: CronSchedule?
    public var id: String { "\(source)/\(kind.rawValue)" }

    /// Every job the config asks for, in a stable order; bad cron expressions and
    /// zones are named with their key.
    public static func plan(_ config: CofferConfig) throws -> [JobSpec] {
        let agentZone: TimeZone
        if let name = config.agent.timeZone {
            guard let zone = TimeZone(identifier: name) else { throw CronError("agent.time_zone: unknown time zone '\(name)'") }
            agentZone = zone
        } else {
            agentZone = TimeZone.current
        }
        var jobs: [JobSpec] = []
        for source in config.sources.values.sorted(by: { $0.name < $1.name }) {
            let s = source.schedule
            // A scheduled log backup of a capturing engine is a second capture of the same
            // source: both would resume from the same last log (decision 011).
            if source.capture && s.log != nil {
                throw CronError("source.\(source.name): capture = true already stores its logs continuously; remove schedule.log")
            }
            var zone = agentZone
            if let name = s.timeZone {
                guard let z = TimeZone(identifier: name) else {
                    throw CronError("source.\(source.name).schedule.time_zone: unknown time zone '\(name)'")
                }
                zone = z
            }
            let entries: [(JobKind, String?)] = [(.full, s.full), (.incremental, s.incremental), (.log, s.log),
                                                 (.verify, s.verify), (.prune, s.prune)]
            for (kind, expression) in entries {
                guard let expression else { continue }
                do {
                    jobs.append(JobSpec(source: source.name, kind: kind, schedule: try CronSchedule(expression, timeZone: zone)))
                } catch let error as CronError {
                    throw CronError("source.\(source.name).schedule.\(kind.rawValue): \(error.description)")
                }
            }
            if source.capture { jobs.append(JobSpec(source: source.name, kind: .capture, schedule: nil)) }
        }
        return jobs
    }
}
