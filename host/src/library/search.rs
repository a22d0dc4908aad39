//! Every copy of a pack's library on this machine, preferred first (`find_all`).
//!
//! Users have their libraries in many places: ldconfig's folders, ROCm's `/opt/rocm-X.Y.Z`,
//! several HIP majors side by side (`libamdhip64.so.6` and `.so.7`), inside Python wheels
//! (`torch/lib`, `nvidia/*/lib`) and conda environments. The search order (also in
//! docs/writing-a-pack.md, "How `build` finds the file"), for the pack's `soname` and then each
//! `also` name:
//!
//! 1. `--lib PACK=/path`: then only that file.
//! 2. `ldconfig -p` (64-bit entries).
//! 3. `$ROCM_PATH/lib`.
//! 4. `/opt/rocm/lib`, then each `/opt/rocm-X.Y.Z/lib`, newest first.
//! 5. The standard folders: `/usr/lib/x86_64-linux-gnu`, `/lib/x86_64-linux-gnu`, `/usr/lib64`,
//!    `/usr/local/lib`.
//! 6. The Python environment of `--python PY` (asked of that interpreter), else the active
//!    `$VIRTUAL_ENV` and `$CONDA_PREFIX`, and the environment bthost itself is installed in
//!    (a venv's or conda's `bin/bthost`, which sudo runs without them): in each site-packages `torch/lib` and `nvidia/*/lib`
//!    (`nvidia/nccl/lib/libnccl.so.2`, `nvidia/cuda_runtime/lib/libcudart.so.12`), then the
//!    prefix's `lib/` (conda's libraries).
//!
//! Copies are told apart by the file they are (device and inode), so links to one file are one
//! copy. The first copy is the preferred one: its version picks the pack's variant. Which
//! copies are probed is decided with the job (crate::library::job).
//!
//! Running as root, a copy that another user could change (crate::registry::trust: the file or
//! a folder above it owned by someone else, or writable by others) is not probed: bthost and
//! bpftrace read it as root. It is listed as skipped, with why; `--lib PACK=PATH` probes it anyway.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Found, LdCache, LibOverrides};
use crate::pack::Pack;

/// The standard library folders (step 5).
pub const STANDARD_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
];

/// A Python environment whose wheels may carry the libraries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyEnv {
    /// `sys.prefix`.
    pub prefix: PathBuf,
    pub site_packages: Vec<PathBuf>,
    /// How it was found, for messages: `--python /venv/bin/python`, `$VIRTUAL_ENV`.
    pub said: String,
}

impl PyEnv {
    /// Asks the interpreter `python` for its prefix and site-packages (`--python PY`).
    pub fn ask(python: &Path) -> Result<PyEnv, String> {
        let code =
            "import site, sys\nprint(sys.prefix)\nfor p in site.getsitepackages(): print(p)\n\
                    if site.ENABLE_USER_SITE: print(site.getusersitepackages())";
        let out = Command::new(python)
            .args(["-c", code])
            .output()
            .map_err(|e| format!("--python {}: cannot run it: {e}", python.display()))?;
        if !out.status.success() {
            return Err(format!(
                "--python {}: it failed ({}): {}",
                python.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().map(str::trim).filter(|l| l.starts_with('/'));
        let prefix = lines.next().ok_or_else(|| {
            format!(
                "--python {}: it did not print its sys.prefix",
                python.display()
            )
        })?;
        Ok(PyEnv {
            prefix: PathBuf::from(prefix),
            site_packages: lines.map(PathBuf::from).collect(),
            said: format!("--python {}", python.display()),
        })
    }

    /// The environment at `prefix` (`$VIRTUAL_ENV`, `$CONDA_PREFIX`), without running its
    /// interpreter: its site-packages are `lib/python3*/site-packages`.
    pub fn at(prefix: &Path, said: &str) -> PyEnv {
        let mut site_packages = Vec::new();
        for lib in ["lib", "lib64"] {
            let mut found: Vec<PathBuf> = std::fs::read_dir(prefix.join(lib))
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let e = e.ok()?;
                    let name = e.file_name();
                    name.to_str()?.starts_with("python3").then(|| e.path())
                })
                .map(|d| d.join("site-packages"))
                .filter(|d| d.is_dir())
                .collect();
            found.sort();
            site_packages.extend(found);
        }
        PyEnv {
            prefix: prefix.to_path_buf(),
            site_packages,
            said: said.to_string(),
        }
    }

    /// The folders where its wheels keep native libraries, with how to say each.
    fn dirs(&self) -> Vec<(PathBuf, String)> {
        let mut v = Vec::new();
        for sp in &self.site_packages {
            v.push((
                sp.join("torch/lib"),
                format!(
                    "torch/lib of the Python environment {} ({})",
                    self.prefix.display(),
                    self.said
                ),
            ));
            let mut nv: Vec<PathBuf> = std::fs::read_dir(sp.join("nvidia"))
                .into_iter()
                .flatten()
                .filter_map(|e| Some(e.ok()?.path().join("lib")))
                .filter(|d| d.is_dir())
                .collect();
            nv.sort();
            for d in nv {
                let rel = d.strip_prefix(sp).unwrap_or(&d).display().to_string();
                v.push((
                    d,
                    format!(
                        "{rel} of the Python environment {} ({})",
                        self.prefix.display(),
                        self.said
                    ),
                ));
            }
        }
        v.push((
            self.prefix.join("lib"),
            format!(
                "lib/ of the Python environment {} ({})",
                self.prefix.display(),
                self.said
            ),
        ));
        v
    }
}

/// `--python PY`, asked once at the command line's edge (crate::library::search::set_python).
static PYTHON: OnceLock<PyEnv> = OnceLock::new();

/// Remembers `--python PY`'s environment for every search of this run.
pub fn set_python(python: &Path) -> Result<(), String> {
    let env = PyEnv::ask(python)?;
    let _ = PYTHON.set(env);
    Ok(())
}

/// Where `find_all` looks, besides `--lib`: every root can be replaced (tests).
#[derive(Clone, Debug, Default)]
pub struct Search {
    pub cache: LdCache,
    /// `$ROCM_PATH`.
    pub rocm_path: Option<PathBuf>,
    /// The folder holding `rocm` and `rocm-X.Y.Z` (`/opt`).
    pub opt: PathBuf,
    /// The standard folders (STANDARD_DIRS).
    pub std_dirs: Vec<PathBuf>,
    pub python: Vec<PyEnv>,
    /// Skip copies another user could change (bthost runs as root).
    pub as_root: bool,
}

/// The Python environment (a venv: `pyvenv.cfg`; conda: `conda-meta/`) whose `bin/` holds
/// `exe`, if any.
pub fn installed_env(exe: &Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    let prefix = bin.parent()?;
    (prefix.join("pyvenv.cfg").is_file() || prefix.join("conda-meta").is_dir())
        .then(|| prefix.to_path_buf())
}

impl Search {
    /// This machine's: ldconfig, `$ROCM_PATH`, `/opt`, the standard folders, `--python` or
    /// `$VIRTUAL_ENV` and `$CONDA_PREFIX`.
    pub fn standard() -> Search {
        Search::standard_with(LdCache::load())
    }

    /// As `standard`, with ldconfig's cache already read.
    pub fn standard_with(cache: LdCache) -> Search {
        let env_dir = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let python = match PYTHON.get() {
            Some(p) => vec![p.clone()],
            None => {
                let mut envs: Vec<PyEnv> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
                    .iter()
                    .filter_map(|k| env_dir(k).map(|p| PyEnv::at(&p, &format!("${k}"))))
                    .collect();
                // `sudo /venv/bin/bthost record ...` drops $VIRTUAL_ENV: the environment
                // bthost was installed into (pip, the wheel) is the job's as often as not.
                let own = std::env::current_exe().ok().and_then(|e| installed_env(&e));
                if let Some(own) = own.filter(|o| !envs.iter().any(|e| &e.prefix == o)) {
                    envs.push(PyEnv::at(&own, "the environment bthost is installed in"));
                }
                envs
            }
        };
        Search {
            cache,
            rocm_path: env_dir("ROCM_PATH"),
            opt: PathBuf::from("/opt"),
            std_dirs: STANDARD_DIRS.iter().map(PathBuf::from).collect(),
            python,
            as_root: crate::registry::trust::running_as_root(),
        }
    }

    /// The folders searched after ldconfig, in order, with how to say each (steps 3 to 6).
    pub fn dirs(&self) -> Vec<(PathBuf, String)> {
        let mut v = Vec::new();
        if let Some(r) = &self.rocm_path {
            v.push((r.join("lib"), "$ROCM_PATH/lib".to_string()));
        }
        let rocm = self.opt.join("rocm");
        v.push((rocm.join("lib"), format!("{}/lib", rocm.display())));
        for (_, d) in rocm_versions(&self.opt) {
            let lib = d.join("lib");
            let said = format!("ROCm install {}", d.display());
            v.push((lib, said));
        }
        for d in &self.std_dirs {
            v.push((d.clone(), "standard folder".to_string()));
        }
        for env in &self.python {
            v.extend(env.dirs());
        }
        v
    }

    /// Whether running as root forbids probing `path`, and why.
    pub fn untrusted(&self, path: &Path) -> Option<String> {
        if !self.as_root {
            return None;
        }
        crate::registry::trust::check_trusted(path)
            .err()
            .map(|why| format!("not trusted as root: {why}"))
    }
}

/// `/opt/rocm-X.Y.Z` folders, newest first.
fn rocm_versions(opt: &Path) -> Vec<(semver::Version, PathBuf)> {
    let mut v: Vec<(semver::Version, PathBuf)> = std::fs::read_dir(opt)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let ver = name.to_str()?.strip_prefix("rocm-")?;
            let mut parts = ver.split('.').map(|p| p.parse::<u64>().ok());
            let major = parts.next()??;
            let minor = parts.next().flatten().unwrap_or(0);
            let patch = parts.next().flatten().unwrap_or(0);
            e.path()
                .is_dir()
                .then(|| (semver::Version::new(major, minor, patch), e.path()))
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    v
}

/// The copies of a pack's library: usable ones, preferred first, and those skipped.
#[derive(Clone, Debug, Default)]
pub struct Copies {
    pub found: Vec<Found>,
    /// Copies that are not probed, and why (another user could change them, a path that
    /// cannot be written into a probe).
    pub skipped: Vec<(Found, String)>,
}

/// The file `path` is (device, inode), links followed.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    let md = std::fs::metadata(path).ok()?;
    md.is_file().then(|| (md.dev(), md.ino()))
}

/// Every copy of `pack`'s library (see the module's documentation for the order).
pub fn find_all(pack: &Pack, overrides: &LibOverrides, search: &Search) -> Result<Copies, String> {
    if let Some(p) = overrides.get(&pack.name) {
        if !p.is_file() {
            return Err(format!("--lib {}={}: no such file", pack.name, p.display()));
        }
        let abs = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
        return Ok(Copies {
            found: vec![Found {
                path: abs,
                how: "--lib".into(),
            }],
            skipped: Vec::new(),
        });
    }
    let names: Vec<&String> = std::iter::once(&pack.library.soname)
        .chain(pack.library.also.iter())
        .collect();
    let mut cands: Vec<(PathBuf, String)> = Vec::new();
    for name in &names {
        if let Some(p) = search.cache.lookup(name) {
            cands.push((p.to_path_buf(), "ldconfig".into()));
        }
    }
    for (dir, said) in search.dirs() {
        for name in &names {
            cands.push((dir.join(name), said.clone()));
        }
    }
    let mut copies = Copies::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    for (path, how) in cands {
        let Some(id) = file_id(&path) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let found = Found {
            path: path.clone(),
            how,
        };
        if let Some(why) = search.untrusted(&path) {
            copies.skipped.push((found, why));
            continue;
        }
        match probe_path(&path) {
            Ok(p) => copies.found.push(Found { path: p, ..found }),
            Err(why) => copies.skipped.push((found, why)),
        }
    }
    if copies.found.is_empty() {
        let mut msg = format!(
            "library {} of pack {} not found (ldconfig -p, $ROCM_PATH/lib, {}/rocm*/lib, {}, Python environments{}); install it or give --lib {}=/path/to/{}",
            pack.library.soname,
            pack.name,
            search.opt.display(),
            search
                .std_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if search.python.is_empty() {
                " (none active: --python PY names one)"
            } else {
                ""
            },
            pack.name,
            pack.library.soname
        );
        for (f, why) in &copies.skipped {
            msg.push_str(&format!(
                "; skipped {} ({}): {why}",
                f.path.display(),
                f.how
            ));
        }
        return Err(msg);
    }
    Ok(copies)
}

/// The path to write into a probe for `path`: as found, else its real path, when only that
/// passes crate::ident::check_lib_path.
pub fn probe_path(path: &Path) -> Result<PathBuf, String> {
    let ok = |p: &Path| {
        p.to_str()
            .ok_or_else(|| format!("{} is not UTF-8", p.display()))
            .and_then(crate::ident::check_lib_path)
    };
    match ok(path) {
        Ok(()) => Ok(path.to_path_buf()),
        Err(why) => {
            let real =
                std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
            ok(&real).map(|()| real).map_err(|_| why)
        }
    }
}

/// The name a library file is known by before its version: `libamdhip64.so.7.2.53211` and
/// `libamdhip64.so` are both `libamdhip64.so`; a name without `.so` (a program) is itself.
pub fn base_name(name: &str) -> &str {
    name.match_indices(".so")
        .map(|(i, _)| i + 3)
        .find(|&end| name[end..].is_empty() || name[end..].starts_with('.'))
        .map_or(name, |end| &name[..end])
}

/// The base names of `pack`'s library (its soname's and each `also`'s).
pub fn pack_bases(pack: &Pack) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for n in std::iter::once(&pack.library.soname).chain(pack.library.also.iter()) {
        let b = base_name(n).to_string();
        if !v.contains(&b) {
            v.push(b);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names() {
        assert_eq!(base_name("libamdhip64.so.7.2.53211"), "libamdhip64.so");
        assert_eq!(base_name("libamdhip64.so"), "libamdhip64.so");
        assert_eq!(base_name("libhsa-runtime64.so.1"), "libhsa-runtime64.so");
        assert_eq!(base_name("short_app"), "short_app");
        assert_eq!(base_name("libfoo.soup.so.1"), "libfoo.soup.so");
    }

    #[test]
    fn rocm_folders_newest_first() {
        let dir = std::env::temp_dir().join(format!("bthost-rocmver-{}", std::process::id()));
        for d in [
            "rocm-6.4.3",
            "rocm-7.2.4",
            "rocm-7.10.0",
            "rocm",
            "rocmx",
            "rocm-x",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let v: Vec<String> = rocm_versions(&dir)
            .into_iter()
            .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(v, ["rocm-7.10.0", "rocm-7.2.4", "rocm-6.4.3"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
