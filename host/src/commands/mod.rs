//! The commands, each taking plain options (the CLI's clap structs are converted in main.rs).

pub mod build;
pub mod doctor;
pub mod packs;
