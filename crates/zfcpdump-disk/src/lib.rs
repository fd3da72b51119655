//! Host-side handling of zipl-prepared SCSI dump disk images: create one laid out
//! like `zipl --dumpto` ([`prepare`]), tell what it holds ([`status`]), and copy a
//! finished dump out of it ([`extract`]).
//!
//! Only whole-disk images are handled (sector 0 with the zipl MBR and the DOS
//! partition table), never a bare partition image: the MBR's boot_info is what
//! locates the superblock. Everything on the disk is big-endian and decoded by
//! `zfcpdump-format`, so the tool works on little- and big-endian hosts alike.

pub mod extract;
pub mod prepare;
pub mod status;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Errors of the tool that are not a verdict about the disk's contents.
#[derive(Debug)]
pub enum Error {
    /// An I/O error, with what was being done.
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The cause, in the text (not the `source()`).
        source: io::Error,
    },
    /// A bad argument (sizes, layout that zipl would refuse).
    Usage(String),
    /// `extract` on a disk that holds no complete dump.
    NotComplete(status::State),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Usage(m) => write!(f, "{m}"),
            Error::NotComplete(state) => {
                write!(
                    f,
                    "refusing to extract: the disk holds no complete dump ({})",
                    state.describe()
                )
            }
        }
    }
}

/// The text of [`Error::Io`] includes its cause, which is therefore not also
/// its `source()`: a printed error chain names it once.
impl std::error::Error for Error {}

impl Error {
    /// The process exit code for this error: a refused extract exits with the
    /// state's status code, everything else with 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotComplete(state) => state.exit_code(),
            _ => 1,
        }
    }
}

/// Attaches a description to I/O errors.
pub(crate) trait IoContext<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: f(),
            source,
        })
    }
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub(crate) fn read_at(file: &mut File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_at(file: &mut File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// Creates `path` through a temporary file in the same directory that is renamed
/// over `path` only after `fill` succeeded and the data is on disk, so a failure
/// never leaves a half-written file under the final name. Refuses to replace
/// anything but a regular file (a block device given by mistake stays untouched).
pub(crate) fn write_atomically<T>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<T, Error>,
) -> Result<T, Error> {
    if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
        return Err(Error::Usage(format!(
            "refusing to replace {}: it exists and is not a regular file",
            path.display()
        )));
    }
    let tmp = temp_path(path);
    let mut file = File::options()
        .write(true)
        .read(true)
        .create_new(true)
        .open(&tmp)
        .context(|| format!("creating {}", tmp.display()))?;
    let result = fill(&mut file).and_then(|v| {
        file.sync_all()
            .context(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        std::fs::rename(&tmp, path)
            .context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(v)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; not all platforms can open directories.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    result
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use zfcpdump_format::error_chain as chain;

    #[test]
    fn an_io_error_is_named_once_in_a_chain() {
        let e = Err::<(), _>(io::Error::other("medium error"))
            .context(|| "reading disk.img".into())
            .unwrap_err();
        // What the tool prints: the context and the cause.
        assert_eq!(e.to_string(), "reading disk.img: medium error");
        let printed = chain(&e);
        assert_eq!(printed.matches("medium error").count(), 1, "{printed}");
    }
}
