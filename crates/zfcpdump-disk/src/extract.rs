//! `extract`: copy a complete dump out of the dump area into an ELF file.
//!
//! The length is the ELF's own extent (header, program headers, notes and every
//! segment's file bytes), not the dump area size. The copy streams through one
//! bounded buffer and leaves holes where the dump has all-zero blocks, so free
//! memory of the dumped machine costs no disk space. PT_LOADs with
//! `p_filesz < p_memsz` (zero-page elision) are written as stored: the ELF is
//! copied byte for byte, and readers treat the missing tail as zeros.

use crate::status::{State, inspect};
use crate::{Error, IoContext, write_atomically};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Size of the copy buffer.
pub const BUFFER_SIZE: usize = 1 << 20;

/// Writes the dump in the image at `image` to `out` (atomically) and returns the
/// number of bytes. Refuses with [`Error::NotComplete`] unless `status` would
/// say complete.
pub fn extract(image: &Path, out: &Path) -> Result<u64, Error> {
    let report = inspect(image)?;
    let summary = match report.state {
        State::Complete(s) => s,
        other => return Err(Error::NotComplete(other)),
    };
    let start = report
        .superblock
        .map(|sb| sb.dump_area().start)
        .unwrap_or_default();
    let len = summary.extent;
    let shown = image.display();
    let mut src = File::open(image).context(|| format!("opening {shown}"))?;
    src.seek(SeekFrom::Start(start))
        .context(|| format!("seeking in {shown}"))?;
    write_atomically(out, |dst| {
        let ctx_w = || format!("writing {}", out.display());
        let mut buf = vec![0u8; BUFFER_SIZE];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(BUFFER_SIZE as u64) as usize;
            src.read_exact(&mut buf[..n])
                .context(|| format!("reading the dump area of {shown}"))?;
            if buf[..n].iter().all(|&b| b == 0) {
                dst.seek(SeekFrom::Current(n as i64)).context(ctx_w)?;
            } else {
                dst.write_all(&buf[..n]).context(ctx_w)?;
            }
            done += n as u64;
        }
        // Trailing holes need the length set explicitly.
        dst.set_len(len).context(ctx_w)?;
        Ok(len)
    })
}
