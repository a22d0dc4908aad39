//! The bpftrace we generate for: its version, and what differs between versions.

pub mod dialect;
pub mod version;

pub use dialect::Dialect;
pub use version::{detect, parse_version};
