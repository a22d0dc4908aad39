//! The stable ABI between the `bthost` host and its probe-pack plugins.
//!
//! A pack is data (`packs/<name>/pack.toml` and bpftrace fragments) plus, when its records need
//! decoding that data cannot express, a plugin: a `cdylib` that exports one [`PackModRef`] root
//! module. The host turns each log line into a generic [`Event`] from the schema (argument names,
//! types, enum names, link keys), then hands the record and that draft to the pack's [`Decoder`],
//! which may edit the draft, add events, or drop it.
//!
//! Rules that keep this interface stable:
//! - Only FFI-safe types cross it (abi_stable's `R*` types, `#[repr(C)]` structs).
//! - It grows by appending: new root-module fields go last, after a version bump of this crate.
//! - This crate's own version is the ABI version. The host refuses a plugin built against an
//!   incompatible one before abi_stable's layout check, with a short message naming both.
//! - `RStr<'static>` is sound for names because neither abi_stable nor the host ever unloads a
//!   plugin library, and the host leaks (interns) the schema names it hands out.
#![allow(non_local_definitions)] // #[sabi_trait] expands to impls inside functions.

mod decoder;
mod event;
mod module;
mod record;

pub use decoder::{Decoder, DecoderBox, Decoder_TO};
pub use event::{Arg, Event, EventKind, Link, Value};
pub use module::{DecoderConfig, PackMod, PackModRef, PluginInfo};
pub use record::{Phase, Record};

/// Re-exported so that plugins use the exact abi_stable this API was built with.
pub use abi_stable;

/// The ABI version: this crate's version. Plugins report it through [`export_pack_plugin!`].
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The same, NUL-terminated, for the plain C symbol the host reads before abi_stable loads.
#[doc(hidden)]
pub const ABI_VERSION_CSTR: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Name of the plain C function every plugin exports; it returns [`ABI_VERSION_CSTR`].
pub const ABI_SYMBOL: &str = "bthost_plugin_abi_version";

/// Whether a plugin built against ABI `plugin` can be loaded by a host that speaks `host`.
/// Semver rules: same major version, and for 0.x the same minor version.
pub fn abi_compatible(host: &str, plugin: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
    match (parts(host), parts(plugin)) {
        (Some((hm, hn)), Some((pm, pn))) => hm == pm && (hm != 0 || hn == pn),
        _ => false,
    }
}

/// Exports a plugin: the abi_stable root module built from `$info` and `$new_decoder`, and the
/// plain C symbol that states the ABI version.
///
/// ```ignore
/// bthost_plugin_api::export_pack_plugin!(info, new_decoder);
/// ```
#[macro_export]
macro_rules! export_pack_plugin {
    ($info:path, $new_decoder:path) => {
        #[$crate::abi_stable::export_root_module]
        pub fn bthost_pack_root_module() -> $crate::PackModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::PackMod {
                info: $info,
                new_decoder: $new_decoder,
            }
            .leak_into_prefix()
        }

        #[no_mangle]
        pub extern "C" fn bthost_plugin_abi_version() -> *const ::std::os::raw::c_char {
            $crate::ABI_VERSION_CSTR.as_ptr().cast()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_compatibility_follows_semver() {
        assert!(abi_compatible("0.1.0", "0.1.7"));
        assert!(!abi_compatible("0.1.0", "0.2.0"));
        assert!(abi_compatible("1.2.0", "1.0.0"));
        assert!(!abi_compatible("1.0.0", "2.0.0"));
        assert!(!abi_compatible("0.1.0", "garbage"));
    }

    #[test]
    fn c_string_is_terminated() {
        assert_eq!(ABI_VERSION_CSTR.strip_suffix('\0'), Some(ABI_VERSION));
    }
}
