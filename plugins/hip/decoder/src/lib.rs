//! The `hip` pack's decoder, as its plugin (`plugins/hip/`, a cdylib) exports it and as the
//! bthost binary carries it built in: the current device of each thread.
//!
//! HIP keeps a current device per host thread; calls name streams and pointers, not devices.
//! The decoder learns the device from successful `hipSetDevice` / `hipGetDevice` calls and sets
//! the `device` link key on every later event of that thread, so the traces can link all work
//! done on one GPU. Until a thread's device is known, its events carry no `device` key (HIP's
//! default is device 0, but the thread may have set another before tracing began).

mod device;

use abi_stable::std_types::{RResult, RString, RVec};
use bthost_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque, DecoderBox, DecoderConfig, Decoder_TO, PluginInfo,
    ABI_VERSION,
};

pub use device::{DeviceTracker, HIP_DEVICE_CALLS};

/// The pack version this decoder is for (must equal packs/hip/pack.toml's).
pub const PACK_VERSION: &str = env!("CARGO_PKG_VERSION");

pub extern "C" fn info() -> PluginInfo {
    PluginInfo {
        pack: "hip".into(),
        pack_version: PACK_VERSION.into(),
        abi_version: ABI_VERSION.into(),
        links: RVec::from(vec!["device".into()]),
    }
}

pub extern "C" fn new_decoder(_cfg: &DecoderConfig) -> RResult<DecoderBox, RString> {
    RResult::ROk(Decoder_TO::from_value(DeviceTracker::default(), TD_Opaque))
}
