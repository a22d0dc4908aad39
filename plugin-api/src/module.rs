//! The root module every plugin exports, and the handshake it answers.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString, RVec},
    StableAbi,
};

use crate::decoder::DecoderBox;

/// What a plugin says of itself when loaded.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct PluginInfo {
    /// The pack it decodes for: must equal the `name` in the pack's `pack.toml`.
    pub pack: RStr<'static>,
    /// The pack version it was written for: must equal the `version` in `pack.toml`.
    pub pack_version: RStr<'static>,
    /// [`crate::ABI_VERSION`] as the plugin was built.
    pub abi_version: RStr<'static>,
    /// Link keys the plugin itself sets (beyond those pack.toml declares on arguments).
    pub links: RVec<RStr<'static>>,
}

/// What the host tells a new decoder.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct DecoderConfig {
    /// The pack version named in the log's header (the log may be older than the pack).
    pub log_pack_version: RString,
}

/// The root module. Append new fields only after `new_decoder`, with a new ABI version.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PackModRef)))]
#[sabi(missing_field(panic))]
pub struct PackMod {
    pub info: extern "C" fn() -> PluginInfo,
    #[sabi(last_prefix_field)]
    pub new_decoder: extern "C" fn(&DecoderConfig) -> RResult<DecoderBox, RString>,
}

impl RootModule for PackModRef {
    declare_root_module_statics! {PackModRef}
    const BASE_NAME: &'static str = "bthost_pack";
    const NAME: &'static str = "bthost pack plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
