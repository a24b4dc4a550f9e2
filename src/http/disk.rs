//! The free-disk floor: with the embedded store, writes are refused (507, with a log
//! line) while the data directory's file system has less free space than
//! `server.min_free_disk_mib`, so a flood of webhooks cannot fill the disk. The free space
//! is read at most once a second.

use super::errors::ApiError;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The free bytes, or why the disk could not be read (shared: a reading is kept a second).
type FreeBytes = Result<u64, std::sync::Arc<std::io::Error>>;

pub struct DiskFloor {
    dir: Option<PathBuf>,
    floor_bytes: u64,
    /// The last reading and when it was taken.
    last: Mutex<Option<(Instant, FreeBytes)>>,
}

impl DiskFloor {
    /// A floor on `dir`'s disk (`None`: the store is elsewhere, nothing to guard).
    pub fn new(dir: Option<PathBuf>, floor_mib: u64) -> Self {
        Self {
            dir,
            floor_bytes: floor_mib.saturating_mul(1 << 20),
            last: Mutex::new(None),
        }
    }

    fn free_bytes(dir: &std::path::Path) -> FreeBytes {
        crate::store::free_disk_bytes(dir).map_err(std::sync::Arc::new)
    }

    /// `Err(507)` while the disk is below the floor. A disk that cannot be read is let
    /// through (and logged): refusing every webhook over a failed check would lose more.
    pub fn check(&self) -> Result<(), ApiError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let free = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match &*last {
                Some((at, v)) if at.elapsed() < Duration::from_secs(1) => v.clone(),
                _ => {
                    let v = Self::free_bytes(dir);
                    *last = Some((Instant::now(), v.clone()));
                    v
                }
            }
        };
        match free {
            Ok(free) if free < self.floor_bytes => {
                tracing::error!(
                    data_dir = %dir.display(),
                    free_mib = free >> 20,
                    floor_mib = self.floor_bytes >> 20,
                    "the data directory's disk is below its free-space floor: writes are refused until space is freed"
                );
                Err(ApiError::InsufficientStorage(format!(
                    "the service's disk has {} MiB free, below its floor of {} MiB (server.min_free_disk_mib): nothing was stored",
                    free >> 20,
                    self.floor_bytes >> 20
                )))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(data_dir = %dir.display(), error = %e, "reading the free disk space failed");
                Ok(())
            }
        }
    }
}
