//! The `rccl` pack's decoder, as its plugin (`plugins/rccl/`, a cdylib) exports it and as the
//! bthost binary carries it built in: what a communicator is, across processes, and which collective
//! each call is.
//!
//! - A communicator's identity across processes is its unique id (the first word of the
//!   `ncclUniqueId`, a random magic that every rank passes to `ncclCommInitRank`); the decoder
//!   sets the `comm` link key to it, so the calls of all ranks of one communicator link up.
//!   A communicator first seen after its creation keeps its (per-process) pointer.
//! - Its rank, size and device come from the init calls (the device is the one current on the
//!   creating thread, captured by the pack from RCCL's own hipGetDevice) and from
//!   ncclCommCount / ncclCommUserRank / ncclCommCuDevice.
//! - Each rank's collectives on each communicator are numbered (`seq`, from 1); the `coll` link
//!   key joins the calls with the same number across ranks: one collective, all its ranks.

mod comms;
mod decoder;

use abi_stable::std_types::{RResult, RString, RVec};
use bthost_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque, DecoderBox, DecoderConfig, Decoder_TO, PluginInfo,
    ABI_VERSION,
};

pub use comms::{CommInfo, Comms};
pub use decoder::RcclDecoder;

/// The pack version this decoder is for (must equal packs/rccl/pack.toml's).
pub const PACK_VERSION: &str = env!("CARGO_PKG_VERSION");

pub extern "C" fn info() -> PluginInfo {
    PluginInfo {
        pack: "rccl".into(),
        pack_version: PACK_VERSION.into(),
        abi_version: ABI_VERSION.into(),
        links: RVec::from(vec!["comm".into(), "device".into(), "coll".into()]),
    }
}

pub extern "C" fn new_decoder(_cfg: &DecoderConfig) -> RResult<DecoderBox, RString> {
    RResult::ROk(Decoder_TO::from_value(RcclDecoder::default(), TD_Opaque))
}
