import ArgumentParser
import CofferVault

struct VaultCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check every object's structure; with --read-data, every byte.",
        discussion: """
        Without --read-data: the index files open and match their names, every pack header opens \
        and agrees with the index, every manifest opens and every blob it needs is indexed in a \
        pack that exists. With --read-data also: every pack's bytes match its name and every blob \
        authenticates, decompresses and matches its id. Each problem names the object. \
        Exits 14 when anything is wrong.
        """
    )

    @OptionGroup var options: VaultOptions

    @Flag(help: "Read and verify every blob.")
    var readData = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let vault = try options.open()
            let progress = ProgressLine("checking")
            let report = try VaultChecker(vault: vault).run(readData: readData) { progress.update(message: $0) }
            progress.finish()
            if json {
                try Terminal.printJSON(report)
            } else {
                for p in report.problems { print("error: \(p.kind) \(p.name): \(p.message)") }
                for n in report.notes { print("note: \(n)") }
                let what = readData ? ", \(report.blobsChecked) blobs read and verified" : ""
                print("\(report.ok ? "no errors" : "\(report.problems.count) error(s)"): \(report.packs) packs, \(report.indexFiles) index files, \(report.manifests) manifests\(what)")
            }
            if !report.ok { throw ExitCode(VaultError.corruptObject(kind: .packs, name: "", reason: "").exitCode) }
        }
    }
}
