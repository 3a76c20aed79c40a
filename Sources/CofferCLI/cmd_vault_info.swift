import ArgumentParser
import CofferVault

struct VaultInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the vault's format, object counts, sizes, and dedupe and compression ratios."
    )

    @OptionGroup var options: VaultOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let vault = try options.open()
            let stats = try VaultStatistics.gather(vault)
            if json {
                struct Out: Encodable {
                    let format: Int, id: String, config: VaultConfig, statistics: VaultStatistics
                    let dedupeRatio: Double, compressionRatio: Double
                }
                try Terminal.printJSON(Out(format: vault.config.format, id: vault.config.id, config: vault.config,
                                           statistics: stats, dedupeRatio: stats.dedupeRatio,
                                           compressionRatio: stats.compressionRatio))
                return
            }
            let c = vault.config
            print("""
            vault        \(vault.backend.location)
            id           \(c.id)
            format       \(c.format)
            created      \(Format.time(c.created))
            chunking     cdc min \(Format.bytes(Int64(c.chunker.min))), avg \(Format.bytes(Int64(c.chunker.avg))), max \(Format.bytes(Int64(c.chunker.max)))
            packs        \(stats.packs) (target \(Format.bytes(Int64(c.packSize))) each)
            compression  zstd level \(c.compressionLevel)
            key slots    \(stats.keySlots)
            index files  \(stats.indexFiles)
            backups      \(stats.manifests)
            blobs        \(stats.blobs)
            logical      \(Format.bytes(stats.logicalBytes))  (all backups as restored)
            unique       \(Format.bytes(stats.uniqueBytes))  (after dedupe)
            stored       \(Format.bytes(stats.storedBytes))  (pack files on disk)
            dedupe       \(Format.ratio(stats.dedupeRatio))
            compression  \(Format.ratio(stats.compressionRatio))
            """)
        }
    }
}
