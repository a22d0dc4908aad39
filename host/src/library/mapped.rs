//! Files read through a read-only mapping (crate::library::symbols, deps).

use std::path::Path;

/// A file mapped read-only: only the pages the symbol tables occupy are read, not the whole
/// file (a library of 14 MB, bthost's own binary of 40-80 MB with its debug information).
pub struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    pub fn open(path: &Path) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        let len =
            usize::try_from(f.metadata()?.len()).map_err(|_| std::io::Error::other("too large"))?;
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a private read-only mapping of a file we opened; the fd may close after.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is `len` bytes, readable, and lives as long as self. A file
        // truncated meanwhile would fault (SIGBUS): libraries and binaries are replaced by
        // rename, not rewritten in place, and root's libraries are not others' to change.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping what open mapped.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}
