//! bthost: trace GPU runtime APIs with bpftrace uprobes, from probe packs, and turn the log into
//! readable per-thread logs and traces. The binary (`main.rs`) is a thin CLI over this library.

pub mod bpftrace;
pub mod calls;
pub mod commands;
pub mod compose;
pub mod convert;
pub mod decode;
pub mod hash;
pub mod hostlist;
pub mod ident;
pub mod library;
pub mod log;
pub mod pack;
pub mod record;
pub mod registry;
pub mod report;
pub mod safe_out;
pub mod stacks;
pub mod symbolize;
