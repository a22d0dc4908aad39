//! Finding the library a pack probes, and which functions it exports.

pub mod deps;
pub mod job;
pub(crate) mod mapped;
pub mod search;
#[cfg(test)]
mod search_tests;
pub mod symbols;
pub mod version;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pack::Pack;
pub use search::{find_all, Copies, Search};

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
    /// For messages: `ldconfig`, `--lib`, `ROCm install /opt/rocm-7.2.4`, `the command ./prog
    /// loads it: prog NEEDs libamdhip64.so.5, found through its runpath (/x)`.
    pub how: String,
}

/// Finds the library that a pack's call reaches inside `caller` (a `[[nested]]` probe on the
/// library `soname`), as the dynamic linker would load it for `caller`:
/// 1. a `--lib SONAME=` override (the nested `library` name, or the name `caller` NEEDs);
/// 2. the file `caller` NEEDs of the same base name (`libamdhip64.so.7` for a nested
///    `libamdhip64.so.5`: RCCL 7.2 NEEDs HIP 7), else `soname` itself, looked for through
///    `caller`'s runpath (or rpath),
/// 3. then ldconfig's cache,
/// 4. then the search folders of crate::library::search (`$ROCM_PATH`, `/opt/rocm*`, the
///    standard folders, Python environments),
/// 5. then, last, `caller`'s own folder. The dynamic linker does not look there for a library
///    without a runpath; but a library found outside ldconfig's folders usually comes with its
///    own system root (a sysroot, a container image, a Debian root such as
///    /var/cache/bthost/sid) whose ldconfig would find its neighbour there. From the host,
///    the neighbour is the best guess of that root's file, and a better one than a file of
///    another major version elsewhere.
///
/// Running as root, a file another user could change is refused (crate::registry::trust).
pub fn find_nested(
    soname: &str,
    caller: &Path,
    overrides: &LibOverrides,
    search: &search::Search,
) -> Result<Found, String> {
    let caller_deps = deps::read(caller).unwrap_or_default();
    let base = search::base_name(soname);
    let needed = caller_deps
        .needed
        .iter()
        .find(|n| n.as_str() == soname)
        .or_else(|| {
            caller_deps
                .needed
                .iter()
                .find(|n| search::base_name(n) == base)
        })
        .cloned();
    let name = needed.clone().unwrap_or_else(|| soname.to_string());
    for key in [soname, name.as_str()] {
        if let Some(p) = overrides.get(key) {
            let abs = std::fs::canonicalize(p)
                .map_err(|e| format!("--lib {key}={}: {e}", p.display()))?;
            return Ok(Found {
                path: abs,
                how: "--lib".into(),
            });
        }
    }
    let said = if name == soname {
        String::new()
    } else {
        format!(", for the {name} the pack's library NEEDs")
    };
    let mut cands: Vec<(PathBuf, String)> = Vec::new();
    for d in &caller_deps.runpath {
        cands.push((
            d.join(&name),
            format!("runpath of the pack's library{said}"),
        ));
    }
    if let Some(p) = search.cache.lookup(&name) {
        cands.push((p.to_path_buf(), format!("ldconfig{said}")));
    }
    for (d, how) in search.dirs() {
        cands.push((d.join(&name), format!("{how}{said}")));
    }
    if let Some(d) = caller.parent() {
        cands.push((
            d.join(&name),
            format!("beside the pack's library (it has no runpath, and ldconfig here does not know {name}){said}"),
        ));
    }
    let mut refused = Vec::new();
    for (p, how) in cands {
        if !p.is_file() {
            continue;
        }
        if let Some(why) = search.untrusted(&p) {
            refused.push(format!("{} ({how}): {why}", p.display()));
            continue;
        }
        let abs = std::fs::canonicalize(&p).unwrap_or(p);
        match search::probe_path(&abs) {
            Ok(path) => return Ok(Found { path, how }),
            Err(why) => refused.push(format!("{} ({how}): {why}", abs.display())),
        }
    }
    let mut msg = format!(
        "library {name} (called by {}) not found: give --lib {name}=/path",
        caller.display()
    );
    for r in refused {
        msg.push_str(&format!("; skipped {r}"));
    }
    Err(msg)
}

/// The dynamic linker's cache (`ldconfig -p`), read once.
#[derive(Clone, Default, Debug)]
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

/// Finds `pack`'s library: the preferred of its copies (crate::library::search::find_all).
pub fn find(pack: &Pack, overrides: &LibOverrides, cache: &LdCache) -> Result<Found, String> {
    let search = search::Search::standard_with(cache.clone());
    let mut copies = search::find_all(pack, overrides, &search)?;
    Ok(copies.found.remove(0))
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
