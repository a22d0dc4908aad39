//! Loading a pack plugin: a plain-symbol ABI handshake first (short, clear errors), then
//! abi_stable's root-module load with its full layout check.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use bthost_plugin_api::{abi_compatible, PackModRef, PluginInfo, ABI_SYMBOL, ABI_VERSION};

/// A loaded plugin. Libraries are never unloaded (abi_stable's rule), so this is `Copy`-cheap.
#[derive(Clone)]
pub struct Plugin {
    pub path: PathBuf,
    pub module: PackModRef,
    pub info: PluginInfo,
}

/// Why a plugin was not loaded: a short message, and abi_stable's long one for `-v`.
#[derive(Debug)]
pub struct LoadError {
    pub msg: String,
    pub detail: Option<String>,
}

impl LoadError {
    fn short(msg: String) -> LoadError {
        LoadError { msg, detail: None }
    }
}

/// Loads the plugin at `path`.
pub fn load(path: &Path) -> Result<Plugin, LoadError> {
    let plugin_abi = handshake(path)?;
    if !abi_compatible(ABI_VERSION, &plugin_abi) {
        return Err(LoadError::short(format!(
            "built for plugin ABI {plugin_abi}, but this bthost speaks ABI {ABI_VERSION}: rebuild the \
             plugin against bthost-plugin-api {ABI_VERSION}"
        )));
    }
    let module = lib_header_from_path(path)
        .and_then(|h| h.init_root_module::<PackModRef>())
        .map_err(|e| abi_stable_error(&e, &plugin_abi))?;
    let info = (module.info())();
    if info.abi_version.as_str() != plugin_abi {
        return Err(LoadError::short(format!(
            "its handshake says ABI {plugin_abi} but its root module says {}",
            info.abi_version
        )));
    }
    Ok(Plugin {
        path: path.to_path_buf(),
        module,
        info,
    })
}

/// Reads the plugin's ABI version through a plain C symbol, before abi_stable touches it.
fn handshake(path: &Path) -> Result<String, LoadError> {
    // SAFETY: loading runs the library's initializers; the caller has checked (as root) that
    // the file is trusted, and a plugin is code the user chose to run.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| LoadError::short(format!("cannot load: {e}")))?;
    let version = {
        // SAFETY: the symbol's type is fixed by bthost_plugin_api::export_pack_plugin!.
        let f: libloading::Symbol<unsafe extern "C" fn() -> *const c_char> =
            unsafe { lib.get(ABI_SYMBOL.as_bytes()) }.map_err(|_| {
                LoadError::short(format!(
                    "not a bthost plugin: it has no `{ABI_SYMBOL}` symbol (plugins export it with \
                     bthost_plugin_api::export_pack_plugin!)"
                ))
            })?;
        // SAFETY: the function returns a pointer to a static NUL-terminated string.
        let p = unsafe { f() };
        if p.is_null() {
            return Err(LoadError::short(format!("`{ABI_SYMBOL}` returned null")));
        }
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    };
    // Keep the library mapped: abi_stable opens it again and never unloads it either.
    std::mem::forget(lib);
    Ok(version)
}

fn abi_stable_error(e: &LibraryError, plugin_abi: &str) -> LoadError {
    let full = e.to_string();
    LoadError {
        msg: format!(
            "its layout does not match plugin ABI {ABI_VERSION} (it says {plugin_abi}): {} \
             (run with -v for abi_stable's full report)",
            layout_summary(&full)
        ),
        detail: Some(full),
    }
}

/// One line out of abi_stable's report (hundreds of lines): where in the type graph the first
/// difference is, e.g. "differs at PackMod.info.__returns: PluginInfo".
fn layout_summary(report: &str) -> String {
    let mut lines = report.lines().map(str::trim);
    let started = lines.by_ref().any(|l| {
        l.split(" error(s)")
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 0)
    });
    if !started {
        let first = report.lines().map(str::trim).find(|l| !l.is_empty());
        return first.unwrap_or("abi_stable refused it").to_string();
    }
    let mut path = Vec::new();
    let mut last_type = "";
    for l in lines.take_while(|l| !l.starts_with("Layout of expected type")) {
        if let Some(f) = l.strip_prefix("field_name:") {
            if f != "0" {
                path.push(f);
            }
        } else if let Some(t) = l.strip_prefix("type:") {
            if path.is_empty() {
                path.push(t);
            }
            last_type = t;
        }
    }
    format!("differs at {}: {last_type}", path.join("."))
}
