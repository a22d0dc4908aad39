//! Composing ONE bpftrace script, and its schema, from the chosen packs.

pub mod emit;
pub mod hooks;
mod progress;
pub mod schema;
mod script;

use std::path::PathBuf;

use bthost_plugin_api::Phase;
use semver::Version;

use crate::bpftrace::Dialect;
use crate::library::symbols::Functions;
use crate::library::version::LibVersion;
use crate::pack::{Pack, Probe, ProbeMode, Variant};
use schema::{FieldSpec, RecordSpec, Schema};

/// One pack as it goes into a script: its library and the functions that library defines.
pub struct PackInput<'a> {
    pub pack: &'a Pack,
    pub library: PathBuf,
    pub functions: Functions,
    /// For each of the pack's `[[nested]]` entries, in order: the library file its call
    /// reaches, and whether that file defines the function.
    pub nested: Vec<(PathBuf, bool)>,
    /// The library's version, where the pack reads it (`[library] version_from`).
    pub lib_version: Option<LibVersion>,
    /// Other copies of the library probed as well (the job is not known and several are
    /// installed): each probe attaches to every copy that defines its function, in one block.
    pub also: Vec<LibCopy>,
}

/// Another copy of a pack's library, probed beside `PackInput::library`.
pub struct LibCopy {
    pub library: PathBuf,
    pub functions: Functions,
    /// As `PackInput::nested`, for this copy.
    pub nested: Vec<(PathBuf, bool)>,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Exit right after BEGIN: attach every probe, print the header, stop (used by checks).
    pub exit_after_begin: bool,
    /// How records leave the kernel.
    pub emit: emit::Emit,
    /// `bthost record`'s own probes (its scripts only).
    pub hooks: Option<hooks::Hooks>,
    /// bpftrace's map size (entries per map; bpftrace gives every map this size and
    /// preallocates it), written as a `config` block where bpftrace has one (0.20 and later).
    pub map_keys: Option<u32>,
    /// bpftrace's output buffer, in pages per CPU (a `config` block, as `map_keys`).
    pub perf_rb_pages: Option<u32>,
}

/// The result of a build.
#[derive(Debug)]
pub struct Built {
    pub script: String,
    pub schema: Schema,
    /// (pack, function) of probes left out because the library lacks the function.
    pub left_out: Vec<LeftOut>,
    /// Number of probes (uprobe + uretprobe) the script attaches.
    pub probe_count: usize,
    /// Which variant of each pack was picked, and why (for `build` and `doctor`).
    pub chosen: Vec<Chosen>,
    /// Which copies of each pack's library are probed, and how each was found (filled by
    /// crate::commands::build, which found them; empty from `compose`).
    pub libraries: Vec<(String, crate::library::job::Choice)>,
}

/// The variant picked for a pack, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub pack: String,
    /// 1-based, in pack.toml's order.
    pub variant: usize,
    pub variants: usize,
    /// `variant 2 of 3 (bpftrace ">=0.17.0, <0.23.0", library ">=2.19"): libnccl.so.2 is 2.32.3 (from ...)`
    pub why: String,
}

/// Picks `pack`'s variant for bpftrace `bpftrace` and the library version `lib`.
/// Said of a variant no test has run (`tested = false`).
pub const UNTESTED: &str = "; no test has run this range of bpftrace: its script follows bpftrace's CHANGELOG (report what fails)";

pub fn choose_variant<'p>(
    pack: &'p Pack,
    bpftrace: &Version,
    library: &std::path::Path,
    lib: Option<&LibVersion>,
) -> Result<(&'p Variant, Chosen), ComposeError> {
    let lib_name = library
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lib_said = match lib {
        Some(l) => format!("{lib_name} is {} ({})", l.version, l.how),
        None if pack.library.version_from.is_empty() => String::new(),
        None => format!(
            "the version of {lib_name} is unknown (read from {})",
            pack.library
                .version_from
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let Some(variant) = pack.variant_for(bpftrace, lib.map(|l| &l.version)) else {
        let ranges = if pack.supports_bpftrace(bpftrace) {
            let v: Vec<_> = pack.variants.iter().map(Variant::describe).collect();
            format!("{}; {lib_said}", v.join("; "))
        } else {
            pack.supported_ranges()
        };
        return Err(ComposeError::NoVariant(Box::new(NoVariant {
            pack: pack.name.clone(),
            version: pack.version.clone(),
            bpftrace: bpftrace.clone(),
            ranges,
        })));
    };
    let n = pack
        .variants
        .iter()
        .position(|v| std::ptr::eq(v, variant))
        .unwrap_or(0)
        + 1;
    let mut why = format!(
        "variant {n} of {} ({}) for bpftrace {bpftrace}",
        pack.variants.len(),
        variant.describe()
    );
    if !lib_said.is_empty() {
        why.push_str(": ");
        why.push_str(&lib_said);
    }
    if !variant.tested {
        why.push_str(UNTESTED);
    }
    Ok((
        variant,
        Chosen {
            pack: pack.name.clone(),
            variant: n,
            variants: pack.variants.len(),
            why,
        },
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("pack {} {} has no variant for bpftrace {}; it supports {}", .0.pack, .0.version, .0.bpftrace, .0.ranges)]
    NoVariant(Box<NoVariant>),
    #[error("{0}")]
    Library(String),
    #[error("no probe of the chosen packs exists in their libraries ({0}); nothing to trace")]
    NothingToProbe(String),
}

#[derive(Debug)]
pub struct NoVariant {
    pub pack: String,
    pub version: Version,
    pub bpftrace: Version,
    pub ranges: String,
}

/// A probe left out of the script, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    pub pack: String,
    /// The function (for a nested probe: `library:function (nested)`).
    pub function: String,
    pub why: &'static str,
}

/// A probe that made it into the script, with its record ids and the variant it came from.
/// A nested capture probe that made it into the script.
pub(crate) struct PlannedNested<'a> {
    pub pack: &'a Pack,
    pub nested: &'a crate::pack::Nested,
    /// The files its call reaches (one per copy of the pack's library that reaches another).
    pub libraries: Vec<String>,
    /// Its position among all nested probes of the script (names its map).
    pub seq: usize,
}

pub(crate) struct Planned<'a> {
    pub pack: &'a Pack,
    pub variant: &'a Variant,
    /// The copies of the pack's library that define the function (one attach point each).
    pub libraries: Vec<String>,
    pub probe: &'a Probe,
    /// Record id of the entry (split/entry) or the whole call (call).
    pub first_id: u32,
}

/// Composes the script for `inputs` (sorted by pack name, so the order given does not matter).
pub fn compose(
    inputs: &[PackInput],
    bpftrace: &Version,
    opts: &Options,
) -> Result<Built, ComposeError> {
    let dialect = Dialect::for_version(bpftrace);
    let mut sorted: Vec<&PackInput> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.pack.name.cmp(&b.pack.name));
    sorted.dedup_by(|a, b| a.pack.name == b.pack.name);

    let mut records = Vec::new();
    let mut planned = Vec::new();
    let mut left_out = Vec::new();
    let mut nested = Vec::new();
    let mut chosen = Vec::new();
    for input in &sorted {
        let pack = input.pack;
        let (variant, why) =
            choose_variant(pack, bpftrace, &input.library, input.lib_version.as_ref())?;
        chosen.push(why);
        let lib_version = input.lib_version.as_ref().map(|l| &l.version);
        // Every copy: (path as written into the probes, its functions).
        let mut copies: Vec<(String, &Functions)> = Vec::new();
        for (path, functions) in std::iter::once((&input.library, &input.functions))
            .chain(input.also.iter().map(|c| (&c.library, &c.functions)))
        {
            let library = path.to_str().map(str::to_string).unwrap_or_default();
            crate::ident::check_lib_path(&library).map_err(ComposeError::Library)?;
            if !copies.iter().any(|(l, _)| *l == library) {
                copies.push((library, functions));
            }
        }
        let chosen_probes = pack.probes_for(lib_version);
        // A function whose every probe is for other library versions: said, as a missing one is.
        for p in &pack.probes {
            let named = left_out
                .iter()
                .any(|l: &LeftOut| l.pack == pack.name && l.function == p.function);
            if !named && !chosen_probes.iter().any(|c| c.function == p.function) {
                left_out.push(LeftOut {
                    pack: pack.name.clone(),
                    function: p.function.clone(),
                    why: "is declared only for other versions of the library (`library` ranges)",
                });
            }
        }
        for probe in chosen_probes {
            // Attached only to the copies that define it (bpftrace 0.24 and later refuse a
            // script with a function missing from a file).
            let libraries: Vec<String> = copies
                .iter()
                .filter(|(_, f)| f.probeable(&probe.function))
                .map(|(l, _)| l.clone())
                .collect();
            if libraries.is_empty() {
                left_out.push(LeftOut {
                    pack: pack.name.clone(),
                    function: probe.function.clone(),
                    why: input
                        .functions
                        .why_not(&probe.function)
                        .unwrap_or("is not in the library"),
                });
                continue;
            }
            for (l, f) in &copies {
                if !libraries.contains(l) {
                    left_out.push(LeftOut {
                        pack: pack.name.clone(),
                        function: format!("{} on {l}", probe.function),
                        why: match f.why_not(&probe.function) {
                            Some(w) if w.starts_with("is a zero-size") => {
                                "is a zero-size alias in that copy of the library (probed on the others)"
                            }
                            _ => "is not in that copy of the library (probed on the others)",
                        },
                    });
                }
            }
            let first_id = records.len() as u32 + 1;
            for (phase, fields) in record_layout(probe) {
                records.push(RecordSpec {
                    id: records.len() as u32 + 1,
                    pack: pack.name.clone(),
                    function: probe.function.clone(),
                    phase,
                    fields,
                });
            }
            planned.push(Planned {
                pack,
                variant,
                libraries,
                probe,
                first_id,
            });
        }
        for (i, n) in pack.nested.iter().enumerate() {
            let mut libraries: Vec<String> = Vec::new();
            let reached = std::iter::once(&input.nested)
                .chain(input.also.iter().map(|c| &c.nested))
                .filter_map(|v| v.get(i));
            for (path, present) in reached {
                let lib = path.to_str().map(str::to_string).unwrap_or_default();
                crate::ident::check_lib_path(&lib).map_err(ComposeError::Library)?;
                if *present && !libraries.contains(&lib) {
                    libraries.push(lib);
                }
            }
            if libraries.is_empty() {
                if input.nested.get(i).is_some() {
                    left_out.push(LeftOut {
                        pack: pack.name.clone(),
                        function: format!("{}:{} (nested)", n.library, n.function),
                        why: "is not probeable in the library its call reaches",
                    });
                }
                continue;
            }
            nested.push(PlannedNested {
                pack,
                nested: n,
                libraries,
                seq: nested.len(),
            });
        }
    }
    if planned.is_empty() {
        let names: Vec<_> = sorted.iter().map(|i| i.pack.name.as_str()).collect();
        return Err(ComposeError::NothingToProbe(names.join(", ")));
    }
    let schema = Schema {
        bpftrace: bpftrace.clone(),
        storage: match opts.emit {
            emit::Emit::Printf => schema::Storage::Printed,
            emit::Emit::Drained { .. } => schema::Storage::Maps,
            emit::Emit::Ring { per_thread } => schema::Storage::Ring { per_thread },
        },
        packs: sorted
            .iter()
            .map(|i| (i.pack.name.clone(), i.pack.version.clone()))
            .collect(),
        records,
    };
    let (script, probe_count) =
        script::render(&schema, &planned, &nested, &left_out, &dialect, opts);
    Ok(Built {
        script,
        schema,
        left_out,
        probe_count,
        chosen,
        libraries: Vec::new(),
    })
}

/// The records a probe writes, in order, with their fields.
pub fn record_layout(probe: &Probe) -> Vec<(Phase, Vec<FieldSpec>)> {
    let arg = |a: &crate::pack::Arg| FieldSpec {
        name: a.name.clone(),
        ty: a.ty,
        enum_name: a.enum_name.clone(),
        link: a.link.clone(),
    };
    let ret = probe.ret.as_ref().map(|r| FieldSpec {
        name: "ret".into(),
        ty: r.ty,
        enum_name: r.enum_name.clone(),
        link: r.link.clone(),
    });
    let ins = probe.args.iter().filter(|a| !a.at_exit()).map(arg);
    match probe.mode {
        // One record at exit with everything; the entry values wait in a map, which the
        // script prints at END for calls still in flight (read back as pending entries).
        ProbeMode::Call | ProbeMode::Split => {
            let fields = probe.args.iter().map(arg).chain(ret).collect();
            vec![(Phase::Call, fields), (Phase::Entry, ins.collect())]
        }
        ProbeMode::Entry => vec![(Phase::Entry, ins.collect())],
    }
}
