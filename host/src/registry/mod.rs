//! Discovering packs and plugins, checking them, and saying what was skipped and why.
//!
//! Packs are found by walking folders, never by a list in the host: a new pack is a new folder.
//! The binary also carries the source tree's packs and the built-in plugins' decoders
//! (builtin.rs), used where no folder gives the pack or plugin: a folder's overrides them.
//! Search order (the first pack of a name wins; later ones are reported as shadowed):
//! `--pack-path` folders; `$BTHOST_PACK_PATH` (colon-separated); the source tree's `packs/` when
//! bthost runs from `target/<profile>/`; `<prefix>/share/bthost/packs` beside an installed
//! binary. Plugins (`libbthost_pack_<name>.so`) are looked for inside each pack folder, in
//! `$BTHOST_PLUGIN_PATH`, beside the binary (cargo's output folder) and in
//! `<prefix>/lib/bthost/plugins`.

pub mod builtin;
pub mod plugin;
pub mod trust;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::pack::{manifest, Pack};
pub use plugin::Plugin;

/// Where to look.
#[derive(Clone, Debug, Default)]
pub struct SearchPaths {
    pub packs: Vec<PathBuf>,
    pub plugins: Vec<PathBuf>,
}

impl SearchPaths {
    /// The standard places, after the `extra` pack folders given on the command line.
    pub fn standard(extra: &[PathBuf]) -> SearchPaths {
        let mut s = SearchPaths {
            packs: extra.to_vec(),
            plugins: Vec::new(),
        };
        if let Some(v) = std::env::var_os("BTHOST_PACK_PATH") {
            s.packs
                .extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        if let Some(v) = std::env::var_os("BTHOST_PLUGIN_PATH") {
            s.plugins
                .extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        if let Some(exe_dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            // target/<profile>/bthost (or target/<profile>/deps/<test>) in the source tree; not
            // a binary installed elsewhere in it (a venv's bin/, `pip install .`), which uses
            // what it carries.
            if let Some(root) = exe_dir.ancestors().take(4).find(|d| {
                d.join("packs").is_dir()
                    && d.join("Cargo.toml").is_file()
                    && exe_dir.starts_with(d.join("target"))
            }) {
                s.packs.push(root.join("packs"));
                // Tests run from target/<profile>/deps, where cargo also keeps hashed copies
                // of the plugins; the plugins proper are one level up.
                let out_dir = if exe_dir.ends_with("deps") {
                    exe_dir.parent().unwrap_or(&exe_dir).to_path_buf()
                } else {
                    exe_dir.clone()
                };
                s.plugins.push(out_dir);
            }
            if let Some(prefix) = exe_dir.parent() {
                s.packs.push(prefix.join("share/bthost/packs"));
                s.plugins.push(prefix.join("lib/bthost/plugins"));
            }
        }
        s
    }
}

/// One pack, with its plugin if one was found and loaded.
pub struct Entry {
    pub pack: Pack,
    pub plugin: Option<Plugin>,
    /// A folder's pack (or plugin) used instead of the one the binary carries.
    pub overrides_builtin: bool,
    pub plugin_overrides_builtin: bool,
}

/// Something found but not used.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: String,
    /// A long explanation (abi_stable's report), shown with -v.
    pub detail: Option<String>,
}

/// Every pack found, and what was skipped.
pub struct Registry {
    pub entries: BTreeMap<String, Entry>,
    pub skipped: Vec<Skipped>,
}

impl Registry {
    /// Discovers packs and plugins. With `load_plugins` false, plugins are not opened (`build`
    /// needs only the data).
    pub fn discover(paths: &SearchPaths, load_plugins: bool) -> Registry {
        let as_root = trust::running_as_root();
        let mut reg = Registry {
            entries: BTreeMap::new(),
            skipped: Vec::new(),
        };
        for root in &paths.packs {
            if !root.is_dir() {
                continue;
            }
            for manifest_path in pack_manifests(root) {
                let dir = manifest_path.parent().unwrap_or(root).to_path_buf();
                reg.add_pack_dir(&dir, as_root);
            }
        }
        // The binary's own packs, where no folder gave one.
        for p in builtin::packs() {
            match p {
                Ok(pack) => match reg.entries.get_mut(&pack.name) {
                    Some(e) => e.overrides_builtin = true,
                    None => reg.insert(pack),
                },
                Err(e) => reg.skip(&e.file.clone(), format!("built-in pack: {e}"), None),
            }
        }
        if load_plugins {
            let mut files = Vec::new();
            for e in reg.entries.values() {
                if !builtin::is_builtin(&e.pack.dir) {
                    files.extend(plugin_files(&e.pack.dir, 2));
                }
            }
            for d in &paths.plugins {
                files.extend(plugin_files(d, 1));
            }
            for f in files {
                reg.add_plugin(&f, as_root);
            }
            for p in builtin::plugins() {
                reg.add_builtin_plugin(p);
            }
        }
        reg
    }

    fn insert(&mut self, pack: Pack) {
        self.entries.insert(
            pack.name.clone(),
            Entry {
                pack,
                plugin: None,
                overrides_builtin: false,
                plugin_overrides_builtin: false,
            },
        );
    }

    /// A plugin the binary carries, for its pack if no folder's plugin serves it and the
    /// versions agree (a folder's pack of another version needs its own plugin).
    fn add_builtin_plugin(&mut self, p: Plugin) {
        let Some(entry) = self.entries.get_mut(p.info.pack.as_str()) else {
            return;
        };
        if entry.plugin.is_some() {
            entry.plugin_overrides_builtin = true;
        } else if p.info.pack_version.as_str() == entry.pack.version.to_string() {
            entry.plugin = Some(p);
        }
    }

    fn skip(&mut self, path: &Path, why: impl Into<String>, detail: Option<String>) {
        self.skipped.push(Skipped {
            path: path.to_path_buf(),
            why: why.into(),
            detail,
        });
    }

    fn add_pack_dir(&mut self, dir: &Path, as_root: bool) {
        if as_root {
            // The folder, and every file in it (pack.toml, fragments; a link is checked where
            // it leads): a file others can write in a root-owned folder still reaches root's
            // script.
            let files = walkdir::WalkDir::new(dir).follow_links(false).into_iter();
            for p in std::iter::once(dir.to_path_buf())
                .chain(files.filter_map(Result::ok).map(|e| e.into_path()))
            {
                if let Err(why) = trust::check_trusted(&p) {
                    return self.skip(dir, format!("not trusted as root: {why}"), None);
                }
            }
        }
        match manifest::load(dir) {
            Err(e) => self.skip(dir, e.to_string(), None),
            Ok(pack) => {
                if let Some(first) = self.entries.get(&pack.name) {
                    let why = format!(
                        "pack {} is shadowed by {}",
                        pack.name,
                        first.pack.dir.display()
                    );
                    return self.skip(dir, why, None);
                }
                self.insert(pack);
            }
        }
    }

    fn add_plugin(&mut self, file: &Path, as_root: bool) {
        if as_root {
            if let Err(why) = trust::check_trusted(file) {
                return self.skip(file, format!("not trusted as root: {why}"), None);
            }
        }
        let p = match plugin::load(file) {
            Ok(p) => p,
            Err(e) => return self.skip(file, e.msg, e.detail),
        };
        let name = p.info.pack.as_str();
        let Some(entry) = self.entries.get_mut(name) else {
            return self.skip(
                file,
                format!("plugin for pack {name:?}, which no pack folder provides"),
                None,
            );
        };
        if let Some(first) = &entry.plugin {
            if first.path != file {
                let why = format!("plugin for {name} is shadowed by {}", first.path.display());
                self.skip(file, why, None);
            }
            return;
        }
        if p.info.pack_version.as_str() != entry.pack.version.to_string() {
            let why = format!(
                "plugin for {name} {} does not match the pack's version {} ({})",
                p.info.pack_version,
                entry.pack.version,
                entry.pack.dir.display()
            );
            return self.skip(file, why, None);
        }
        entry.plugin = Some(p);
    }

    /// The entries for `names`, in the given order; an unknown name is an error listing the known.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Entry>, String> {
        names
            .iter()
            .map(|n| {
                self.entries.get(n).ok_or_else(|| {
                    let known: Vec<_> = self.entries.keys().cloned().collect();
                    let mut msg = format!("unknown pack {n:?}; known packs: {}", known.join(", "));
                    if let Some(s) = self.skipped.iter().find(|s| s.path.ends_with(n)) {
                        msg.push_str(&format!(
                            "\n  ({} was skipped: {})",
                            s.path.display(),
                            s.why
                        ));
                    }
                    msg
                })
            })
            .collect()
    }
}

/// `pack.toml` files at most two levels below `root` (a root may be one pack or a folder of packs).
fn pack_manifests(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = WalkDir::new(root)
        .max_depth(2)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name() == "pack.toml")
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// Plugin files (`libbthost_pack_*.so`) at most `depth` levels below `dir`.
fn plugin_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = WalkDir::new(dir)
        .max_depth(depth)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            e.file_type().is_file() && n.starts_with("libbthost_pack_") && n.ends_with(".so")
        })
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}
