//! Opening the SQLite file shared with the audit trail. Each module owns
//! and creates its own `anomaly_*` tables.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Opens (creating if needed) the database at `path` with the settings every
/// `anomaly_*` table user needs: a busy timeout, so the daemon and the CLI
/// can share the file, and WAL so readers do not block the writer.
pub(crate) fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL is refused on some filesystems; the default journal still works.
    let _ = conn.pragma_update(None, "journal_mode", "WAL");
    Ok(conn)
}
