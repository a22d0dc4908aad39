//! What the binary says of itself, for installing it: `--version`'s long form (the built-in
//! packs' and decoders' versions, the plugin ABI), shell completion scripts (`bthost
//! completions SHELL`) and man pages (`bthost man [--dir DIR]`), all from the clap
//! definitions in cli.rs. scripts/wheel runs the last two to put them into the wheel.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// The long version (after `bthost `): this build's version, the packs and plugins it
/// carries, with their versions, and the plugin ABI it speaks.
pub fn long_version() -> String {
    use bthost::registry::builtin;
    let packs: Vec<String> = builtin::PACKS
        .iter()
        .zip(builtin::packs())
        .map(|(b, p)| match p {
            Ok(p) => format!("{} {}", p.name, p.version),
            Err(_) => format!("{} (invalid)", b.name),
        })
        .collect();
    let plugins: Vec<String> = builtin::plugins()
        .iter()
        .map(|p| format!("{} {}", p.info.pack, p.info.pack_version))
        .collect();
    format!(
        "{}\npacks: {}\ndecoders: {}\nplugin ABI: {}",
        env!("CARGO_PKG_VERSION"),
        packs.join(", "),
        plugins.join(", "),
        bthost_plugin_api::ABI_VERSION
    )
}

/// The command line's definition, with the long version (computed once, at start).
pub fn command() -> clap::Command {
    // clap keeps version strings as &'static str; one small string per run.
    let long: &'static str = Box::leak(long_version().into_boxed_str());
    Cli::command().long_version(long)
}

/// `bthost completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "bthost", &mut out);
    write_stdout(&out)
}

/// `bthost man`: the man page of bthost (roff) on stdout; with `dir`, bthost.1 and one page
/// per subcommand (bthost-record.1, ...) written there.
pub fn man(dir: Option<&Path>) -> Result<()> {
    // A man page's text is filled: the long version on one line; no page for `help`.
    let long: &'static str = Box::leak(long_version().replace('\n', "; ").into_boxed_str());
    let cmd = Cli::command()
        .long_version(long)
        .disable_help_subcommand(true);
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            write_stdout(&out)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            Ok(())
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)
        .and_then(|()| o.flush())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_holds_together_and_its_long_version_names_what_it_carries() {
        super::command().debug_assert();
        let v = super::long_version();
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(lines[0], env!("CARGO_PKG_VERSION"), "{v}");
        for name in ["cuda", "hip", "hsa", "nccl", "rccl"] {
            assert!(lines[1].contains(&format!("{name} ")), "{v}");
        }
        assert!(
            lines[1].starts_with("packs: ") && !lines[1].contains("invalid"),
            "{v}"
        );
        assert!(lines[2].starts_with("decoders: hip "), "{v}");
        assert_eq!(
            lines[3],
            format!("plugin ABI: {}", bthost_plugin_api::ABI_VERSION)
        );
    }
}
