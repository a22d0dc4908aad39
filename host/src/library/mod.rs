//! Finding the library a pack probes, and which functions it exports.

pub mod deps;
pub(crate) mod mapped;
pub mod symbols;
pub mod version;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pack::Pack;

/// `--lib NAME=/path` overrides, by pack name or by library file name (soname).
pub type LibOverrides = BTreeMap<String, PathBuf>;

/// Parses one `--lib NAME=/path` argument; NAME is a pack (`hip`) or a library (`libamdhip64.so.5`).
pub fn parse_override(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or_else(|| {
        format!("--lib {s:?}: expected PACK=/path/to/library.so or SONAME=/path/to/library.so")
    })?;
    let is_pack = crate::ident::check(crate::ident::IdentKind::Pack, name).is_ok();
    let is_soname = name.starts_with("lib")
        && name.contains(".so")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !is_pack && !is_soname {
        return Err(format!(
            "--lib {s:?}: {name:?} is neither a pack name nor a library file name like libamdhip64.so.5"
        ));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// Where a pack's library was found, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub how: &'static str,
}

/// Finds the library `soname` that a pack's call reaches inside `caller` (a `[[nested]]`
/// probe): a `--lib SONAME=` override, the file `caller`'s runpath loads, else ldconfig's.
pub fn find_nested(
    soname: &str,
    caller: &Path,
    overrides: &LibOverrides,
    cache: &LdCache,
) -> Result<Found, String> {
    if let Some(p) = overrides.get(soname) {
        let abs =
            std::fs::canonicalize(p).map_err(|e| format!("--lib {soname}={}: {e}", p.display()))?;
        return Ok(Found {
            path: abs,
            how: "--lib",
        });
    }
    if let Some(p) = deps::resolve_from(caller, soname) {
        let abs = std::fs::canonicalize(&p).unwrap_or(p);
        return Ok(Found {
            path: abs,
            how: "runpath of the pack's library",
        });
    }
    if let Some(p) = cache.lookup(soname) {
        return Ok(Found {
            path: p.to_path_buf(),
            how: "ldconfig",
        });
    }
    Err(format!(
        "library {soname} (called by {}) not found: give --lib {soname}=/path",
        caller.display()
    ))
}

/// The dynamic linker's cache (`ldconfig -p`), read once.
#[derive(Default, Debug)]
pub struct LdCache {
    entries: Vec<(String, PathBuf)>,
}

impl LdCache {
    pub fn load() -> LdCache {
        let out = Command::new("ldconfig")
            .arg("-p")
            .output()
            .or_else(|_| Command::new("/sbin/ldconfig").arg("-p").output());
        match out {
            Ok(o) => LdCache::parse(&String::from_utf8_lossy(&o.stdout)),
            Err(_) => LdCache::default(),
        }
    }

    /// Parses lines like `\tlibamdhip64.so.5 (libc6,x86-64) => /lib/x86_64-linux-gnu/libamdhip64.so.5`.
    pub fn parse(text: &str) -> LdCache {
        let entries = text
            .lines()
            .filter_map(|l| {
                let (left, path) = l.split_once(" => ")?;
                let name = left.split_whitespace().next()?;
                // Only native 64-bit entries: a 32-bit library cannot be probed in a 64-bit process.
                (left.contains("x86-64") || left.contains("64bit") || !left.contains('('))
                    .then(|| (name.to_string(), PathBuf::from(path.trim())))
            })
            .collect();
        LdCache { entries }
    }

    pub fn lookup(&self, name: &str) -> Option<&Path> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
    }
}

const FALLBACK_DIRS: &[&str] = &[
    "/opt/rocm/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
];

/// Finds `pack`'s library: the `--lib` override, then ldconfig's cache, then common folders.
pub fn find(pack: &Pack, overrides: &LibOverrides, cache: &LdCache) -> Result<Found, String> {
    if let Some(p) = overrides.get(&pack.name) {
        if !p.is_file() {
            return Err(format!("--lib {}={}: no such file", pack.name, p.display()));
        }
        let abs = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
        return Ok(Found {
            path: abs,
            how: "--lib",
        });
    }
    let names = std::iter::once(&pack.library.soname).chain(pack.library.also.iter());
    for name in names.clone() {
        if let Some(p) = cache.lookup(name) {
            return Ok(Found {
                path: p.to_path_buf(),
                how: "ldconfig",
            });
        }
    }
    for name in names {
        for dir in FALLBACK_DIRS {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Ok(Found {
                    path: p,
                    how: "search path",
                });
            }
        }
    }
    Err(format!(
        "library {} of pack {} not found (ldconfig -p, {}); install it or give --lib {}=/path/to/{}",
        pack.library.soname,
        pack.name,
        FALLBACK_DIRS.join(", "),
        pack.name,
        pack.library.soname
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldconfig_output() {
        let c = LdCache::parse(
            "3 libs found in cache `/etc/ld.so.cache'\n\tlibamdhip64.so.5 (libc6,x86-64) => /lib/x86_64-linux-gnu/libamdhip64.so.5\n\tlibfoo.so.1 (libc6) => /lib/i386-linux-gnu/libfoo.so.1\n",
        );
        assert_eq!(
            c.lookup("libamdhip64.so.5"),
            Some(Path::new("/lib/x86_64-linux-gnu/libamdhip64.so.5"))
        );
        assert_eq!(c.lookup("libfoo.so.1"), None);
    }

    #[test]
    fn override_syntax() {
        assert_eq!(
            parse_override("hip=/x/libamdhip64.so").unwrap(),
            ("hip".to_string(), PathBuf::from("/x/libamdhip64.so"))
        );
        assert!(parse_override("/x/lib.so").is_err());
        assert!(parse_override("Bad=/x").is_err());
        assert_eq!(
            parse_override("libamdhip64.so.5=/y").unwrap().0,
            "libamdhip64.so.5"
        );
        assert!(parse_override("lib so=/y").is_err());
    }
}
