//! A file or directory operation that failed: what was being done, where, and the
//! system's error.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done: `reading`, `creating`, `writing`...
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// The error of doing `what` at `path`, for `map_err`.
    pub fn at(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self { what, path, source }
    }
}
