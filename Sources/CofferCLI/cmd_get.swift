import ArgumentParser
import CofferVault

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an artifact of a backup to standard output.",
        discussion: "Every blob is authenticated and checked against its id; a damaged one stops the output with exit 14 and names the pack."
    )

    @OptionGroup var options: VaultOptions

    @Argument(help: "The backup id, or a unique prefix of at least 4 characters.")
    var backup: String

    @Argument(help: "The artifact's name; may be left out when the backup has one artifact.")
    var artifact: String?

    func run() throws {
        try reportingErrors {
            let vault = try options.open()
            let id = try vault.resolveBackup(backup)
            let manifest = try vault.readManifest(id: id)
            let chosen: Artifact
            if let artifact {
                guard let match = manifest.artifacts.first(where: { $0.name == artifact }) else {
                    throw VaultError.invalidArgument("backup \(id.prefix(12)) has no artifact '\(artifact)'; it has: \(manifest.artifacts.map(\.name).joined(separator: ", "))")
                }
                chosen = match
            } else {
                guard manifest.artifacts.count == 1 else {
                    throw VaultError.invalidArgument("backup \(id.prefix(12)) has \(manifest.artifacts.count) artifacts; name one of: \(manifest.artifacts.map(\.name).joined(separator: ", "))")
                }
                chosen = manifest.artifacts[0]
            }
            let progress = ProgressLine("restored")
            try ArtifactReader(vault: vault).read(chosen, progress: { progress.update(bytes: $0) }) { try StandardStreams.write($0) }
            progress.finish()
        }
    }
}
