//! `record --disk-full wait` (the flight recorder's default): a dump that meets a full disk
//! (ENOSPC, EDQUOT) is taken back whole, so that the log ends at the last dump that reached
//! it, and tracing goes on: the ring lives in the kernel's maps, so nothing is lost by
//! waiting. When the log's file system has room again, record dumps once more. Other write
//! errors (EIO), and any outside a dump, stop tracing as before: the log keeps what reached it.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::Path;

/// Whether a write error is the disk's room, which may come back.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Drops what `log` holds unwritten and cuts its file back to `len` bytes (the start of the
/// dump that failed); returns the file, to be written from there.
pub fn rewind<W: std::io::Write>(
    log: BufWriter<W>,
    len: u64,
    file: impl FnOnce(&mut W) -> &mut File,
) -> std::io::Result<W> {
    // Not flushed: what it held is the failed dump's.
    let (mut w, _) = log.into_parts();
    let f = file(&mut w);
    f.set_len(len)?;
    f.seek(SeekFrom::Start(len))?;
    Ok(w)
}

/// Free bytes for an unprivileged writer on the file system of `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct from a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_failed_dump_is_cut_off_whole() {
        let dir = std::env::temp_dir().join(format!("bthost-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("log");
        let f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let mut w = BufWriter::new(f);
        w.write_all(b"kept\n").unwrap();
        w.flush().unwrap();
        w.write_all(b"#E dump\nhalf a dump").unwrap();
        let mut f = rewind(w, 5, |f| f).unwrap();
        f.write_all(b"next\n").unwrap();
        let mut s = String::new();
        File::open(&p).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "kept\nnext\n");
        assert!(is_full(&std::io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(!is_full(&std::io::Error::from_raw_os_error(libc::EIO)));
        assert!(free_bytes(&dir).is_some_and(|b| b > 0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
