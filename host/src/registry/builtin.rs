//! What the bthost binary carries: the source tree's packs as they were when it was built
//! (host/build.rs), and the built-in plugins' decoders (`plugins/<pack>/decoder/`), so that a
//! copy of the binary, or `cargo install --path host`, works anywhere. A pack or plugin found
//! in a folder overrides the built-in one of the same name (`bthost packs` says so).

use std::path::{Path, PathBuf};

use bthost_plugin_api::abi_stable::prefix_type::PrefixTypeTrait;
use bthost_plugin_api::PackMod;

use super::plugin::Plugin;
use crate::pack::manifest::{self, ManifestError};
use crate::pack::Pack;

/// One built-in pack: its folder's name and files (relative path, text).
pub struct BuiltinPack {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

include!(concat!(env!("OUT_DIR"), "/builtin_packs.rs"));

/// Where a built-in pack is said to be, in messages: not a folder.
pub fn dir_of(name: &str) -> PathBuf {
    PathBuf::from(format!("<built-in>/{name}"))
}

/// Whether `dir` names a built-in pack.
pub fn is_builtin(dir: &Path) -> bool {
    dir.starts_with("<built-in>")
}

/// The built-in packs, each parsed as a folder's would be.
pub fn packs() -> Vec<Result<Pack, ManifestError>> {
    PACKS
        .iter()
        .map(|b| {
            let dir = dir_of(b.name);
            let text = b
                .files
                .iter()
                .find(|f| f.0 == "pack.toml")
                .map(|f| f.1)
                .unwrap_or_default();
            let read = |p: &Path| {
                let rel = p.strip_prefix(&dir).unwrap_or(p).to_string_lossy();
                b.files
                    .iter()
                    .find(|f| f.0 == rel)
                    .map(|f| f.1.to_string())
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
            };
            manifest::parse_with(&dir, &dir.join("pack.toml"), text, &read)
        })
        .collect()
}

/// The built-in plugins: the decoders the binary links, as plugin modules.
pub fn plugins() -> Vec<Plugin> {
    let module = |m: PackMod| m.leak_into_prefix();
    let mut v = vec![
        module(PackMod {
            info: bthost_hip_decoder::info,
            new_decoder: bthost_hip_decoder::new_decoder,
        }),
        module(PackMod {
            info: bthost_rccl_decoder::info,
            new_decoder: bthost_rccl_decoder::new_decoder,
        }),
        module(PackMod {
            info: bthost_cuda_decoder::info,
            new_decoder: bthost_cuda_decoder::new_decoder,
        }),
        module(PackMod {
            info: bthost_nccl_decoder::info,
            new_decoder: bthost_nccl_decoder::new_decoder,
        }),
    ];
    v.drain(..)
        .map(|m| Plugin {
            path: PathBuf::from("<built-in>"),
            info: (m.info())(),
            module: m,
        })
        .collect()
}
