import Foundation

/// Every failure a user can meet, each with its own exit code so that scripts can tell
/// "wrong passphrase" from "corrupt vault" without parsing text.
public enum VaultError: Error, CustomStringConvertible, Equatable {
    case notAVault(path: String)
    case newerFormat(found: Int, supported: Int)
    case alreadyExists(path: String)
    case wrongPassphrase
    case diskFull(path: String)
    case corruptObject(kind: ObjectKind, name: String, reason: String)
    case missingObject(kind: ObjectKind, name: String)
    case backupNotFound(String)
    case ambiguousBackup(String)
    case lastKeySlot
    /// Another prune holds the vault's prune lock (docs/decisions/009).
    case pruneLocked(holder: String)
    case invalidArgument(String)
    case io(path: String, message: String)

    public var description: String {
        switch self {
        case .notAVault(let path):
            return "\(path) is not a Coffer vault (no readable 'config'); create one with 'coffer vault init'"
        case .newerFormat(let found, let supported):
            return "the vault has format version \(found), this coffer reads up to \(supported); upgrade coffer"
        case .alreadyExists(let path):
            return "\(path) already exists and is not empty; refusing to initialise a vault there"
        case .wrongPassphrase:
            return "no key slot opens with the given passphrase or key file"
        case .diskFull(let path):
            return "no space left on the device holding \(path); nothing was recorded, the vault is unchanged"
        case .corruptObject(let kind, let name, let reason):
            return "corrupt \(kind.singular) \(name): \(reason)"
        case .missingObject(let kind, let name):
            return "missing \(kind.singular) \(name)"
        case .backupNotFound(let id):
            return "no backup matches '\(id)'"
        case .ambiguousBackup(let id):
            return "'\(id)' matches more than one backup; give more characters"
        case .lastKeySlot:
            return "refusing to remove the last key slot: the vault would become unreadable"
        case .pruneLocked(let holder):
            return "another prune is running on this vault (\(holder)); try again when it has finished"
        case .invalidArgument(let message):
            return message
        case .io(let path, let message):
            return "\(path): \(message)"
        }
    }

    /// Exit codes documented in docs/cli.md.
    public var exitCode: Int32 {
        switch self {
        case .invalidArgument: return 2
        case .wrongPassphrase: return 10
        case .notAVault, .alreadyExists: return 11
        case .newerFormat: return 12
        case .diskFull: return 13
        case .corruptObject: return 14
        case .missingObject: return 15
        case .backupNotFound, .ambiguousBackup: return 16
        case .lastKeySlot: return 17
        case .pruneLocked: return 18
        case .io: return 1
        }
    }
}
