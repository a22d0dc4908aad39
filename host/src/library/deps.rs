//! What a library loads: its DT_NEEDED names and the folders of its DT_RUNPATH / DT_RPATH;
//! and the name it is loaded by (DT_SONAME).
//! A pack that probes calls its library makes into another one (`[[nested]]`) must probe the
//! file *that* library loads, which may be a private copy found through its runpath, not the
//! one ldconfig knows.

use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader};

/// The libraries `path` needs and where its runpath says to look for them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deps {
    pub needed: Vec<String>,
    /// The folders of DT_RUNPATH, or of DT_RPATH when the file has no DT_RUNPATH (the
    /// dynamic linker ignores DT_RPATH beside a DT_RUNPATH), `$ORIGIN` replaced.
    pub runpath: Vec<PathBuf>,
    /// `runpath` came from DT_RPATH: searched before `$LD_LIBRARY_PATH`, and also for what
    /// the libraries this file loads need (crate::library::job follows it).
    pub old_rpath: bool,
    /// DT_SONAME: a shared library has one, an executable none.
    pub soname: Option<String>,
}

pub fn read(path: &Path) -> Result<Deps, String> {
    let mapped =
        super::mapped::Mapped::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let data = mapped.bytes();
    let err = |e: object::Error| format!("{}: {e}", path.display());
    let header = elf::FileHeader64::<object::Endianness>::parse(data).map_err(err)?;
    let endian = header.endian().map_err(err)?;
    let sections = header.sections(endian, data).map_err(err)?;
    let Some((dynamic, link)) = sections.dynamic(endian, data).map_err(err)? else {
        return Ok(Deps::default());
    };
    let strings = sections.strings(endian, data, link).map_err(err)?;
    let origin = path.parent().unwrap_or(Path::new("/"));
    let mut deps = Deps::default();
    let mut rpath = Vec::new();
    for d in dynamic {
        let tag = d.tag32(endian).unwrap_or(0);
        if ![
            elf::DT_NEEDED,
            elf::DT_RUNPATH,
            elf::DT_RPATH,
            elf::DT_SONAME,
        ]
        .contains(&tag)
        {
            continue;
        }
        let Ok(s) = d.string(endian, strings) else {
            continue;
        };
        let s = String::from_utf8_lossy(s);
        if tag == elf::DT_NEEDED {
            deps.needed.push(s.into_owned());
        } else if tag == elf::DT_SONAME {
            deps.soname = Some(s.into_owned());
        } else {
            let into = if tag == elf::DT_RUNPATH {
                &mut deps.runpath
            } else {
                &mut rpath
            };
            for dir in s.split(':').filter(|d| !d.is_empty()) {
                let dir = dir.replace("${ORIGIN}", "$ORIGIN");
                let dir = dir.replace("$ORIGIN", &origin.to_string_lossy());
                into.push(PathBuf::from(dir));
            }
        }
    }
    if deps.runpath.is_empty() && !rpath.is_empty() {
        deps.runpath = rpath;
        deps.old_rpath = true;
    }
    Ok(deps)
}

/// Where `path` would load the library `soname` from: its runpath, if the file is there.
/// `None` means "wherever the dynamic linker's cache says" (the caller asks ldconfig).
pub fn resolve_from(path: &Path, soname: &str) -> Option<PathBuf> {
    let deps = read(path).ok()?;
    if !deps.needed.iter().any(|n| n == soname) {
        return None;
    }
    deps.runpath
        .iter()
        .map(|d| d.join(soname))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_real_hip_runtime_needs() {
        let hip = Path::new("/lib/x86_64-linux-gnu/libamdhip64.so.5");
        if !hip.exists() {
            return; // covered by the end-to-end tests, which require it
        }
        let d = read(hip).unwrap();
        assert!(
            d.needed
                .iter()
                .any(|n| n.starts_with("libhsa-runtime64.so")),
            "{d:?}"
        );
    }
}
