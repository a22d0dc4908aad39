//! Output files that root can write safely in shared folders.
//!
//! bthost runs as root to trace, and its outputs (logs, scripts, schemas, memory maps,
//! converted files) often land in shared folders: a cluster's scratch space, /tmp. Another
//! user who can write there could plant a symlink at an output's name (root would overwrite
//! its target), or replace a file between its writing and its reading. So, as root:
//!
//! - a folder is opened once, component by component, and every later file is created
//!   relative to that open folder (`openat`), so renaming a folder afterwards redirects nothing;
//! - a symlink on the way is followed only if root (or the user running bthost) owns it: a
//!   link another user planted is refused;
//! - files are created with `O_NOFOLLOW`, and an existing file is reused only if it is a
//!   regular file with one link, owned by us (else refused with the reason);
//! - a folder that other users can write to is accepted only if it is sticky (like /tmp),
//!   where they cannot replace root's files.
//!
//! Not as root, paths are used as given: a user's own links are theirs to follow.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why an output path is refused (or could not be opened).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct OutError {
    pub path: PathBuf,
    pub why: String,
}

fn err(path: &Path, why: impl Into<String>) -> OutError {
    OutError {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

fn io_err(path: &Path, e: io::Error) -> OutError {
    err(path, e.to_string())
}

/// An output folder, held open. Cheap to clone (shares the descriptor).
#[derive(Clone, Debug)]
pub struct OutDir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// The checks of the module's comment apply (bthost runs as root).
    strict: bool,
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn fstat(fd: i32) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is valid, and fstat fills it for an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn lstat_at(dir: i32, name: &CString) -> io::Result<libc::stat> {
    // SAFETY: as fstat; AT_SYMLINK_NOFOLLOW describes a link itself.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn open_at(dir: i32, name: &CString, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: openat with a valid descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_type(st: &libc::stat, t: u32) -> bool {
    st.st_mode & libc::S_IFMT == t
}

/// Why root must not write into a folder with this status, if it must not: others can write
/// there and it is not sticky.
fn folder_problem(st: &libc::stat) -> Option<String> {
    let mode = st.st_mode & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Some(format!(
            "the folder is writable by {} (mode {mode:o}) and not sticky: another user could replace \
             what bthost writes there; use a folder only you can write to (or `chmod +t` it)",
            if mode & 0o002 != 0 { "everyone" } else { "its group" }
        ));
    }
    None
}

impl OutDir {
    /// Opens (creating it and its parents if missing, mode 0755) the output folder `path`.
    pub fn create(path: &Path) -> Result<OutDir, OutError> {
        Self::open_with(path, true, euid() == 0)
    }

    /// The folder that will hold the file `file` (its parent; `.` for a bare name).
    pub fn for_file(file: &Path) -> Result<(OutDir, CString), OutError> {
        let name = file
            .file_name()
            .ok_or_else(|| err(file, "not a file name"))?;
        let parent = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = Self::open_with(parent, true, euid() == 0)?;
        let name = cstr(name).map_err(|e| io_err(file, e))?;
        Ok((dir, name))
    }

    fn open_with(path: &Path, create: bool, strict: bool) -> Result<OutDir, OutError> {
        let me = euid();
        let start = if path.is_absolute() { "/" } else { "." };
        let mut fd = open_at(
            libc::AT_FDCWD,
            &CString::new(start).expect("no NUL"),
            libc::O_DIRECTORY | libc::O_RDONLY,
            0,
        )
        .map_err(|e| io_err(path, e))?;
        // The components still to walk, front first (a followed symlink's target is spliced in).
        let mut todo: Vec<PathBuf> = path
            .components()
            .rev()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(PathBuf::from(n)),
                Component::ParentDir => Some(PathBuf::from("..")),
                _ => None,
            })
            .collect();
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            let name = cstr(comp.as_os_str()).map_err(|e| io_err(path, e))?;
            let st = match lstat_at(fd.as_raw_fd(), &name) {
                Ok(st) => Some(st),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => None,
                Err(e) => return Err(io_err(path, e)),
            };
            match st {
                None => {
                    // SAFETY: mkdirat with a valid descriptor and name.
                    let r = unsafe { libc::mkdirat(fd.as_raw_fd(), name.as_ptr(), 0o755) };
                    if r != 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(io_err(path, e));
                        }
                    }
                    todo.push(comp);
                }
                Some(st) if is_type(&st, libc::S_IFLNK) => {
                    if strict && st.st_uid != 0 && st.st_uid != me {
                        return Err(err(
                            path,
                            format!(
                                "{} is a symlink owned by uid {}: as root, bthost does not follow links \
                                 other users could have planted",
                                comp.display(),
                                st.st_uid
                            ),
                        ));
                    }
                    links += 1;
                    if links > 40 {
                        return Err(err(path, "too many levels of symbolic links"));
                    }
                    let mut buf = vec![0u8; libc::PATH_MAX as usize];
                    // SAFETY: readlinkat into a buffer of the given length.
                    let n = unsafe {
                        libc::readlinkat(
                            fd.as_raw_fd(),
                            name.as_ptr(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                        )
                    };
                    if n < 0 {
                        return Err(io_err(path, io::Error::last_os_error()));
                    }
                    buf.truncate(n as usize);
                    let target = PathBuf::from(OsStr::from_bytes(&buf));
                    if target.is_absolute() {
                        fd = open_at(
                            libc::AT_FDCWD,
                            &CString::new("/").expect("no NUL"),
                            libc::O_DIRECTORY | libc::O_RDONLY,
                            0,
                        )
                        .map_err(|e| io_err(path, e))?;
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => todo.push(PathBuf::from(n)),
                            Component::ParentDir => todo.push(PathBuf::from("..")),
                            _ => {}
                        }
                    }
                }
                Some(st) if is_type(&st, libc::S_IFDIR) => {
                    fd = open_at(
                        fd.as_raw_fd(),
                        &name,
                        libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW,
                        0,
                    )
                    .map_err(|e| io_err(path, e))?;
                }
                Some(_) => return Err(err(path, format!("{} is not a folder", comp.display()))),
            }
        }
        let st = fstat(fd.as_raw_fd()).map_err(|e| io_err(path, e))?;
        if strict {
            if let Some(why) = folder_problem(&st) {
                return Err(err(path, why));
            }
        }
        Ok(OutDir {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
            strict,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (or truncates) the file `name` in this folder, for writing.
    pub fn create_file(&self, name: &str) -> Result<File, OutError> {
        self.create_c(&cstr(OsStr::new(name)).map_err(|e| io_err(&self.path, e))?)
    }

    fn create_c(&self, name: &CString) -> Result<File, OutError> {
        let path = self.path.join(OsStr::from_bytes(name.as_bytes()));
        // Not O_TRUNC: an existing file is checked before anything of it is changed.
        let fd = open_at(
            self.fd.as_raw_fd(),
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW,
            0o644,
        )
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                err(
                    &path,
                    "is a symlink: bthost does not write through links (remove it, or choose another name)",
                )
            } else {
                io_err(&path, e)
            }
        })?;
        let st = fstat(fd.as_raw_fd()).map_err(|e| io_err(&path, e))?;
        if !is_type(&st, libc::S_IFREG) {
            return Err(err(&path, "is not a regular file"));
        }
        if self.strict && st.st_uid != euid() {
            return Err(err(
                &path,
                format!(
                    "exists and belongs to uid {}: as root, bthost does not write into files other users own",
                    st.st_uid
                ),
            ));
        }
        if self.strict && st.st_nlink > 1 {
            return Err(err(
                &path,
                "has other hard links: writing it would change them too",
            ));
        }
        let file = File::from(fd);
        file.set_len(0).map_err(|e| io_err(&path, e))?;
        Ok(file)
    }

    /// Opens the file `name` of this folder (one bthost wrote) for reading, not through a link.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let fd = open_at(
            self.fd.as_raw_fd(),
            &cstr(OsStr::new(name))?,
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        )?;
        Ok(File::from(fd))
    }

    /// Removes the file `name` of this folder (a temporary file bthost wrote).
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let c = cstr(OsStr::new(name))?;
        // SAFETY: unlinkat with a valid descriptor and name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The folder `name` inside this one, created if missing.
    pub fn subdir(&self, name: &str) -> Result<OutDir, OutError> {
        let path = self.path.join(name);
        let c = cstr(OsStr::new(name)).map_err(|e| io_err(&path, e))?;
        // SAFETY: mkdirat with a valid descriptor and name.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o755) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_err(&path, e));
            }
        }
        let fd = open_at(
            self.fd.as_raw_fd(),
            &c,
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        )
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
                err(
                    &path,
                    "is a symlink or not a folder: bthost does not write through links",
                )
            } else {
                io_err(&path, e)
            }
        })?;
        let st = fstat(fd.as_raw_fd()).map_err(|e| io_err(&path, e))?;
        if self.strict && st.st_uid != euid() {
            return Err(err(
                &path,
                format!(
                    "exists and belongs to uid {}: as root, bthost does not write into folders other users own",
                    st.st_uid
                ),
            ));
        }
        if self.strict {
            if let Some(why) = folder_problem(&st) {
                return Err(err(&path, why));
            }
        }
        Ok(OutDir {
            fd: Arc::new(fd),
            path,
            strict: self.strict,
        })
    }
}

/// Creates (or truncates) the output file `path`, safely (see the module's comment).
pub fn create(path: &Path) -> Result<File, OutError> {
    let (dir, name) = OutDir::for_file(path)?;
    dir.create_c(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bthost-safe-out-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn strict(path: &Path) -> Result<OutDir, OutError> {
        OutDir::open_with(path, true, true)
    }

    #[test]
    fn creates_folders_and_files_and_reads_them_back() {
        let d = scratch("plain");
        let out = strict(&d.join("a/b")).unwrap();
        out.create_file("x.txt").unwrap().write_all(b"one").unwrap();
        // Truncated when written again.
        out.create_file("x.txt").unwrap().write_all(b"2").unwrap();
        let mut s = String::new();
        out.open_file("x.txt")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "2");
        let sub = out.subdir("maps").unwrap();
        sub.create_file("1.maps").unwrap();
        assert!(d.join("a/b/maps/1.maps").is_file());
        out.remove_file("x.txt").unwrap();
        assert!(!d.join("a/b/x.txt").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_a_symlink_at_the_file_and_leaves_its_target() {
        let d = scratch("link");
        let target = d.join("target");
        std::fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, d.join("x.log")).unwrap();
        let out = strict(&d).unwrap();
        let e = out.create_file("x.log").unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        std::os::unix::fs::symlink(&d, d.join("maps")).unwrap();
        let e = out.subdir("maps").unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_a_folder_others_can_write_unless_sticky() {
        let d = scratch("modes");
        let open = d.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = strict(&open).unwrap_err();
        assert!(e.to_string().contains("writable by everyone"), "{e}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        strict(&open).unwrap().create_file("ok").unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn follows_links_of_our_own_on_the_way() {
        let d = scratch("ownlink");
        std::fs::create_dir(d.join("real")).unwrap();
        std::os::unix::fs::symlink("real", d.join("alias")).unwrap();
        strict(&d.join("alias")).unwrap().create_file("f").unwrap();
        assert!(d.join("real/f").is_file());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
