import ArgumentParser
import CofferAgent
import CofferPluginProtocol
import CofferVault
import Foundation

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify a source's chain: base backups and logs, gaps, restorable windows.",
        discussion: """
        Reads every manifest of the source (an unreadable one is named, as is a backup or \
        log whose blobs are not all in the vault's index), then asks the engine plugin to \
        walk the chain: for PostgreSQL, every timeline with its history, every missing \
        WAL segment from the oldest base backup to the newest segment. Prints the windows \
        a restore can reach. Exit code 23 when anything is missing, duplicated or corrupt.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source's name in the config file.")
    var source: String

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let setup = try SourceJob(options: options, name: source, plugins: 1)
            let records = try SourceRecords(vault: setup.vault, source: setup.source.name, checkBlobs: true)
            var report = try setup.job().chain(source: setup.source.name, records: records.records, action: "verify",
                                               options: setup.source.options, software: setup.software)
            report.problems = records.problems + report.problems
            let bases = records.records.filter { $0.manifest.kind != "log" }.count
            if json {
                struct Out: Encodable {
                    let source: String, ok: Bool, backups: Int, logs: Int
                    let windows: [RestoreWindow], problems: [ChainProblem]
                }
                try Terminal.printJSON(Out(source: setup.source.name, ok: report.problems.isEmpty, backups: bases,
                                           logs: records.records.count - bases, windows: report.windows, problems: report.problems))
            } else {
                print("source \(setup.source.name): \(bases) base backup\(bases == 1 ? "" : "s"), \(records.records.count - bases) logs")
                if report.windows.isEmpty { print("no restorable window") }
                for w in report.windows {
                    print("restorable on \(w.stream): from \(w.fromTime ?? "?") (\(w.fromPosition)) to \(w.toTime ?? "?") (\(w.toPosition)), base \(w.base.prefix(12))")
                }
                for p in report.problems { print("\(p.kind.uppercased()): \(p.detail)") }
                if report.problems.isEmpty { print("no gaps, no duplicates, nothing corrupt") }
            }
            if !report.problems.isEmpty { throw AgentError.chainBroken(problems: report.problems.count) }
        }
    }
}
