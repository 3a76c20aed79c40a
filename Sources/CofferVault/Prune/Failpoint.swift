import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Crash points for the tests of docs/decisions/009: when COFFER_FAILPOINT names a point,
/// the process kills itself there with SIGKILL (no cleanup, no flush), as a power cut or
/// the OOM killer would. Unset, each check is one dictionary lookup.
enum Failpoint {
    private static let armed = ProcessInfo.processInfo.environment["COFFER_FAILPOINT"]

    static func hit(_ name: String) {
        if armed == name { kill(getpid(), SIGKILL) }
    }
}
