// `coffer-agent`: the daemon and its status, in their own executable so that the commands
// on a database's critical path (wal-push, wal-fetch) do not load what the daemon links
// (HTTP server, metrics, libcurl through FoundationNetworking: ~30 shared libraries and
// ~30 ms at every start). `coffer agent` and `coffer status` run this.
import ArgumentParser
import Foundation

struct CofferAgentMain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coffer-agent",
        abstract: "The Coffer daemon (run as `coffer agent`, `coffer status`).",
        subcommands: [AgentCommand.self, Status.self]
    )
}

enum Executables {
    /// `name` in this executable's directory.
    static func sibling(_ name: String) -> String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (me as NSString).deletingLastPathComponent + "/" + name
    }
}

CofferAgentMain.main()
