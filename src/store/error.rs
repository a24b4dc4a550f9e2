//! How a store operation fails.

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The data directory or the database file could not be made or restricted.
    #[error(transparent)]
    Files(#[from] crate::domain::FileError),
    /// `database.url` is not a database URL this build takes.
    #[error("parsing the database URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("connecting to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL `disk_full`), or
    /// SQLite could not write its files for want of space (`SQLITE_IOERR` over `ENOSPC`).
    pub fn is_disk_full(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Database(db) => {
                let code = db.code();
                // SQLite reports its extended result code; the primary code is its low byte.
                let sqlite_full = code
                    .as_deref()
                    .and_then(|c| c.parse::<i64>().ok())
                    .is_some_and(|c| c & 0xff == 13);
                sqlite_full
                    || code.as_deref() == Some("53100")
                    || db.message().contains("database or disk is full")
            }
            sqlx::Error::Io(io) => io.raw_os_error() == Some(28),
            _ => false,
        }
    }

    /// No connection came free in time: the store is busy, not broken.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::PoolTimedOut))
            || matches!(self, Self::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("57014"))
    }
}
