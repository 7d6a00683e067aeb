//! Single instance per data dir: a server that keeps local state in a
//! directory (the relay's file outbox) takes an exclusive lock on it, so a
//! second server on the same directory refuses to start instead of
//! interleaving its journal with the first one's.
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` on `<dir>/limitree.lock`, which
//! holds the holder's pid (for the message). The kernel drops the lock when
//! the holder exits, however it exits (SIGKILL included), so a stale file
//! never blocks a restart: only a live holder does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::{FileExt, TryLockError};

/// The lock file's name inside the locked directory.
pub const LOCK_FILE: &str = "limitree.lock";

/// An exclusive lock on a directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    /// Open for as long as the lock is held: closing it releases the lock.
    _file: File,
}

/// The directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "the data dir {dir} is in use by another limitree (pid {pid}); stop that one, or give this one another data dir",
        dir = dir.display(),
        pid = pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// The holder's pid, as its lock file says.
        pid: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock the data dir {dir}: {source}", dir = dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

impl DirLock {
    /// Creates `dir` if need be and locks it, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let io_err = |source| LockError::Io {
            dir: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        // Called through the trait: `File::try_lock` is newer than our MSRV.
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        file.flush().map_err(io_err)?;
        Ok(DirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = DirLock::acquire(&data).unwrap();
        let text = fs::read_to_string(held.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());

        let err = DirLock::acquire(&data).unwrap_err();
        match &err {
            LockError::Held { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("{other}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id()))
        );

        drop(held);
        DirLock::acquire(&data).unwrap();
    }
}
