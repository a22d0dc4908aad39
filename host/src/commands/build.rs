//! `bthost build`: choose packs, find their libraries, pick variants, compose the script.

use std::path::{Path, PathBuf};

use std::io::Write;

use anyhow::{bail, Context, Result};
use semver::Version;

use crate::bpftrace;
use crate::compose::{self, Built, PackInput};
use crate::library::{self, LdCache, LibOverrides};
use crate::registry::Registry;
use crate::safe_out::OutDir;

/// Which bpftrace to generate for.
#[derive(Clone, Debug)]
pub enum BpftraceChoice {
    /// Run this bpftrace binary with `--version`.
    Detect(PathBuf),
    Version(Version),
}

impl BpftraceChoice {
    pub fn resolve(&self) -> Result<Version> {
        match self {
            BpftraceChoice::Version(v) => Ok(v.clone()),
            BpftraceChoice::Detect(bin) => bpftrace::detect(bin).map_err(anyhow::Error::msg),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub packs: Vec<String>,
    pub bpftrace: BpftraceChoice,
    pub libs: LibOverrides,
    /// How the script is written: records' strategy, record's hooks, bpftrace settings.
    pub script: compose::Options,
}

/// Builds the script. The libraries' symbols decide which probes are kept.
pub fn build(reg: &Registry, opts: &BuildOptions) -> Result<Built> {
    if opts.packs.is_empty() {
        bail!("no packs chosen: give --packs NAME[,NAME...]");
    }
    for name in opts.libs.keys() {
        let is_pack = crate::ident::check(crate::ident::IdentKind::Pack, name).is_ok();
        if is_pack && !opts.packs.contains(name) {
            bail!(
                "--lib {name}=...: pack {name} is not among --packs {}",
                opts.packs.join(",")
            );
        }
    }
    let version = opts.bpftrace.resolve()?;
    let entries = reg.select(&opts.packs).map_err(anyhow::Error::msg)?;
    let cache = LdCache::load();
    let mut inputs = Vec::new();
    for e in &entries {
        let found = library::find(&e.pack, &opts.libs, &cache).map_err(anyhow::Error::msg)?;
        let functions = library::symbols::functions(&found.path).map_err(anyhow::Error::msg)?;
        let mut nested = Vec::new();
        for n in &e.pack.nested {
            let lib = library::find_nested(&n.library, &found.path, &opts.libs, &cache)
                .map_err(anyhow::Error::msg)?;
            let present = library::symbols::functions(&lib.path)
                .map_err(anyhow::Error::msg)?
                .probeable(&n.function);
            nested.push((lib.path, present));
        }
        let lib_version = library::version::read(&found.path, &e.pack.library.version_from);
        inputs.push(PackInput {
            pack: &e.pack,
            library: found.path,
            functions,
            nested,
            lib_version,
        });
    }
    Ok(compose::compose(&inputs, &version, &opts.script)?)
}

/// Says, on stderr, the variant picked for each pack and why, and each probe left out of
/// `built` and why.
pub fn warn_left_out(built: &Built) {
    for c in &built.chosen {
        eprintln!("bthost: pack {}: {}", c.pack, c.why);
    }
    for l in &built.left_out {
        eprintln!(
            "bthost: warning: pack {}: {} {}; its probe is left out",
            l.pack, l.function, l.why
        );
    }
}

/// Where the schema of `script` is written: `bpft.bt` -> `bpft.schema`.
pub fn schema_path(script: &Path) -> PathBuf {
    script.with_extension("schema")
}

/// Writes the script and its schema beside it (crate::safe_out: never through a link).
pub fn write(built: &Built, script: &Path) -> Result<PathBuf> {
    let (dir, name) = OutDir::for_file(script)?;
    let name = name
        .to_str()
        .context("the script's file name is not UTF-8")?;
    write_in(built, &dir, name)?;
    Ok(schema_path(script))
}

/// Writes the script as `name` in `dir`, and its schema beside it.
pub fn write_in(built: &Built, dir: &OutDir, name: &str) -> Result<()> {
    let schema = schema_path(Path::new(name));
    let schema = schema.to_str().expect("from a str");
    for (n, text) in [(name, &built.script), (schema, &built.schema.to_text())] {
        dir.create_file(n)?
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", dir.path().join(n).display()))?;
    }
    Ok(())
}
