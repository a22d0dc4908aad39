//! The commands, each taking plain options (the CLI's clap structs are converted in main.rs).

pub mod build;
pub mod doctor;
pub mod new_pack;
pub mod packs;
pub mod stacks;
