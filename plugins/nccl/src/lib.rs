//! The `nccl` pack's plugin: its decoder (`decoder/`, which the bthost binary also carries
//! built in), exported for loading from a folder (a plugin found there overrides the built-in
//! one; `bthost packs` says which is used).
#![allow(non_local_definitions)]

pub use bthost_nccl_decoder::*;

bthost_plugin_api::export_pack_plugin!(info, new_decoder);
