//! `bthost build`: choose packs, find their libraries, pick variants, compose the script.

use std::path::{Path, PathBuf};

use std::io::Write;

use anyhow::{bail, Context, Result};
use semver::Version;

use crate::bpftrace;
use crate::compose::{self, Built, LibCopy, PackInput};
use crate::library::job::{self, Job};
use crate::library::{self, LdCache, LibOverrides, Search};
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

/// Builds the script. The libraries' symbols decide which probes are kept. The job is not
/// known: every copy of each pack's library found is probed (crate::library::job).
pub fn build(reg: &Registry, opts: &BuildOptions) -> Result<Built> {
    build_for(reg, opts, &Job::Unknown)
}

/// Builds the script for `job`: each pack probes the copy of its library the job loads, when
/// that is known, else every copy found.
pub fn build_for(reg: &Registry, opts: &BuildOptions, job: &Job) -> Result<Built> {
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
    let search = Search::standard_with(LdCache::load());
    let loads = job::loads(job, &search.cache);
    let mut inputs = Vec::new();
    let mut libraries = Vec::new();
    for e in &entries {
        let choice =
            job::choose(&e.pack, &opts.libs, &search, &loads).map_err(anyhow::Error::msg)?;
        let mut copies = Vec::new();
        for found in &choice.probed {
            let functions = library::symbols::functions(&found.path).map_err(anyhow::Error::msg)?;
            let mut nested = Vec::new();
            for n in &e.pack.nested {
                let lib = library::find_nested(&n.library, &found.path, &opts.libs, &search)
                    .map_err(anyhow::Error::msg)?;
                let present = library::symbols::functions(&lib.path)
                    .map_err(anyhow::Error::msg)?
                    .probeable(&n.function);
                nested.push((lib.path, present));
            }
            copies.push(LibCopy {
                library: found.path.clone(),
                functions,
                nested,
            });
        }
        let first = copies.remove(0);
        // The preferred copy's version picks the variant and the probes.
        let lib_version = library::version::read(&first.library, &e.pack.library.version_from);
        inputs.push(PackInput {
            pack: &e.pack,
            library: first.library,
            functions: first.functions,
            nested: first.nested,
            lib_version,
            also: copies,
        });
        libraries.push((e.pack.name.clone(), choice));
    }
    let mut built = compose::compose(&inputs, &version, &opts.script)?;
    built.libraries = libraries;
    Ok(built)
}

/// Says, on stderr, which copies of each pack's library are probed and how each was found,
/// those that are not and why, the variant picked for each pack and why, and each probe left
/// out of `built` and why.
pub fn warn_left_out(built: &Built) {
    for (pack, c) in &built.libraries {
        for f in &c.probed {
            eprintln!(
                "bthost: pack {pack}: probes {} ({}){}",
                f.path.display(),
                f.how,
                if c.probed.len() > 1 {
                    format!(" [{}]", c.why)
                } else {
                    String::new()
                }
            );
        }
        for f in &c.not_probed {
            eprintln!(
                "bthost: pack {pack}: not probing {} ({}): {} loads another copy",
                f.path.display(),
                f.how,
                c.job.as_deref().unwrap_or("the job")
            );
        }
        for (f, why) in &c.skipped {
            eprintln!(
                "bthost: warning: pack {pack}: not probing {} ({}): {why}; --lib {pack}={} probes it anyway",
                f.path.display(),
                f.how,
                f.path.display()
            );
        }
    }
    for c in &built.chosen {
        eprintln!("bthost: pack {}: {}", c.pack, c.why);
    }
    for l in &built.left_out {
        // A function one copy lacks and another has is probed on the other.
        let done = if l.why.ends_with("(probed on the others)") {
            "not attached there"
        } else {
            "its probe is left out"
        };
        eprintln!(
            "bthost: warning: pack {}: {} {}; {done}",
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
