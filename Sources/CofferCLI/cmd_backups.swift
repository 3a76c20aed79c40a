import ArgumentParser
import CofferVault
import Foundation

struct Backups: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List backups, oldest first.")

    @OptionGroup var options: VaultOptions

    @Option(help: "Only backups of this source.")
    var source: String?

    @Flag(help: "Include log backups (archived WAL segments and the like), one per log.")
    var logs = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let vault = try options.open()
            let records = try vault.backups(source: source).filter { logs || $0.manifest.kind != "log" }
            if json {
                struct Out: Encodable {
                    let id: String, source: String, engine: String, kind: String, parent: String?, host: String
                    let started: Date, finished: Date, size: Int64, artifacts: [String], positions: [String: String]
                }
                try Terminal.printJSON(records.map {
                    let m = $0.manifest
                    return Out(id: $0.id, source: m.source, engine: m.engine, kind: m.kind, parent: m.parent, host: m.host,
                               started: m.started, finished: m.finished, size: m.logicalSize,
                               artifacts: m.artifacts.map(\.name), positions: m.positions)
                })
                return
            }
            print(Format.table(["ID", "FINISHED", "SOURCE", "KIND", "SIZE", "ARTIFACTS"], records.map {
                let m = $0.manifest
                return [String($0.id.prefix(12)), Format.time(m.finished), m.source, m.kind, Format.bytes(m.logicalSize),
                        m.artifacts.count == 1 ? m.artifacts[0].name : "\(m.artifacts.count)"]
            }))
        }
    }
}
