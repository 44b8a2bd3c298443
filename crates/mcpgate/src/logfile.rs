//! `logging.file` (`LOG_FILE`): the log written to a file as well as to stderr, and opened again on SIGHUP so
//! that `logrotate` can rename the file and signal, the way it rotates nginx's logs.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::Context;
use tracing_subscriber::fmt::MakeWriter;

/// The log file: a path and the file open at it now (a handle; clones share both). Each log line is one
/// `write` to a file opened for appending, so lines from many threads never interleave.
#[derive(Clone)]
pub(crate) struct LogFile(Arc<Open>);

struct Open {
    path: PathBuf,
    file: RwLock<Arc<File>>,
}

impl LogFile {
    /// Open (create) `path` for appending.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let file = append(path).with_context(|| format!("cannot open the log file {}", path.display()))?;
        Ok(Self(Arc::new(Open { path: path.to_owned(), file: RwLock::new(Arc::new(file)) })))
    }

    /// Open the path again and write there from now on; the file open until now is closed once its last line
    /// is written. On failure the old file stays in use (and the failure is returned, to be logged there).
    pub(crate) fn reopen(&self) -> io::Result<()> {
        let fresh = Arc::new(append(&self.0.path)?);
        *self.0.file.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }

    /// Where the log goes.
    pub(crate) fn path(&self) -> &Path {
        &self.0.path
    }
}

/// Readable by the owner and its group (an `adm`-style log reader), never by everyone: log lines name clients.
fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

/// One log line's writer: the file open when the line began.
pub(crate) struct Line(Arc<File>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(self.0.file.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_file_is_left_behind_and_a_new_one_opened_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (path, rotated) = (dir.path().join("server.log"), dir.path().join("server.log.1"));
        let log = LogFile::open(&path).unwrap();
        log.make_writer().write_all(b"before\n").unwrap();
        // What logrotate does: rename, then signal. Until the signal, lines still go to the renamed file.
        std::fs::rename(&path, &rotated).unwrap();
        log.make_writer().write_all(b"between\n").unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "before\nbetween\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_file_that_cannot_be_opened_names_its_path_and_reopen_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir/server.log");
        let error = LogFile::open(&missing).err().unwrap();
        assert!(format!("{error:#}").contains("no-such-dir/server.log"), "{error:#}");

        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let log = LogFile::open(&sub.join("server.log")).unwrap();
        std::fs::rename(&sub, dir.path().join("gone")).unwrap();
        assert!(log.reopen().is_err());
        log.make_writer().write_all(b"still written\n").unwrap();
        let kept = std::fs::read_to_string(dir.path().join("gone/server.log")).unwrap();
        assert_eq!(kept, "still written\n");
    }
}
