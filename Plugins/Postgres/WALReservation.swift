import CofferPluginKit

/// Keeps the server from recycling the WAL a base backup will need: both modes read the WAL
/// from the start position at the end of the backup (local mode from pg_wal, remote mode
/// through BASE_BACKUP's WAL), and a busy server checkpointing meanwhile would otherwise
/// remove it unless archiving or wal_keep_size happen to hold it. A temporary physical
/// slot, reserved now, holds it for as long as the connection lives, and goes with it.
enum WALReservation {
    /// Reserves WAL from the current insert position; best effort: a server with no free
    /// slot (max_replication_slots) still backs up, with a warning, as before.
    static func reserve(on connection: Connection) {
        do {
            _ = try connection.value(
                "SELECT slot_name::text FROM pg_create_physical_replication_slot('coffer_backup_' || pg_backend_pid(), true, true)")
        } catch {
            PluginRunner.log("warning: could not reserve WAL for the backup with a temporary replication slot (\(error)); "
                + "a checkpoint during the backup may remove WAL it needs unless wal_keep_size or archiving holds it")
        }
    }
}
