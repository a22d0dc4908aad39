//! When bthost runs as root, what it loads (plugins) and what reaches a root-run bpftrace script
//! (pack folders) must not be writable by other users: otherwise any local user could run code
//! as root. A path is trusted when it and every folder above it is owned by root (or by the
//! user running bthost) and writable by nobody else; a sticky folder above (like /tmp) is fine,
//! since others cannot replace what root owns inside it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether the process runs with root's effective uid.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Checks `path` and its ancestors; `Err` says which one is unsafe and why.
pub fn check_trusted(path: &Path) -> Result<(), String> {
    let me = unsafe { libc_geteuid() };
    let abs = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut first = true;
    for p in abs.ancestors() {
        let md = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mode = md.mode();
        if md.uid() != 0 && md.uid() != me {
            return Err(format!(
                "{} is owned by uid {}, not by root: another user could change what root runs",
                p.display(),
                md.uid()
            ));
        }
        let sticky_ancestor = !first && md.is_dir() && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky_ancestor {
            return Err(format!(
                "{} is writable by {} (mode {:o}): another user could change what root runs; `chmod go-w` it",
                p.display(),
                if mode & 0o002 != 0 { "everyone" } else { "its group" },
                mode & 0o7777
            ));
        }
        first = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn refuses_world_writable() {
        let base = std::env::temp_dir().join(format!("bthost-trust-{}", std::process::id()));
        let dir = base.join("packs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_trusted(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_trusted(&dir).unwrap_err();
        assert!(e.contains("writable by everyone"), "{e}");
        // A world-writable folder above makes everything below untrusted too.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = check_trusted(&dir).unwrap_err();
        assert!(e.contains("its group"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
