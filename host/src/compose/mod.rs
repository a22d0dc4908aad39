//! Composing ONE bpftrace script, and its schema, from the chosen packs.

pub mod emit;
pub mod hooks;
pub mod schema;
mod script;

use std::path::PathBuf;

use bthost_plugin_api::Phase;
use semver::Version;

use crate::bpftrace::Dialect;
use crate::library::symbols::Functions;
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
    pub library: String,
    /// Its position among all nested probes of the script (names its map).
    pub seq: usize,
}

pub(crate) struct Planned<'a> {
    pub pack: &'a Pack,
    pub variant: &'a Variant,
    pub library: String,
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
    for input in &sorted {
        let pack = input.pack;
        let variant = pack.variant_for(bpftrace).ok_or_else(|| {
            ComposeError::NoVariant(Box::new(NoVariant {
                pack: pack.name.clone(),
                version: pack.version.clone(),
                bpftrace: bpftrace.clone(),
                ranges: pack.supported_ranges(),
            }))
        })?;
        let library = input
            .library
            .to_str()
            .map(str::to_string)
            .unwrap_or_default();
        crate::ident::check_lib_path(&library).map_err(ComposeError::Library)?;
        for probe in &pack.probes {
            if let Some(why) = input.functions.why_not(&probe.function) {
                left_out.push(LeftOut {
                    pack: pack.name.clone(),
                    function: probe.function.clone(),
                    why,
                });
                continue;
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
                library: library.clone(),
                probe,
                first_id,
            });
        }
        for (n, (path, present)) in pack.nested.iter().zip(&input.nested) {
            let lib = path.to_str().map(str::to_string).unwrap_or_default();
            crate::ident::check_lib_path(&lib).map_err(ComposeError::Library)?;
            if !present {
                left_out.push(LeftOut {
                    pack: pack.name.clone(),
                    function: format!("{}:{} (nested)", n.library, n.function),
                    why: "is not probeable in the library its call reaches",
                });
                continue;
            }
            nested.push(PlannedNested {
                pack,
                nested: n,
                library: lib,
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
