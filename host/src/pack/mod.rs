//! Packs: what to probe, as data (`packs/<name>/pack.toml` and fragment files).

pub mod completion;
pub mod fragment;
pub mod manifest;
pub mod types;

use std::collections::BTreeMap;
use std::path::PathBuf;

use semver::{Version, VersionReq};

use fragment::Fragment;
use types::FieldType;

/// A checked pack manifest.
#[derive(Clone, Debug)]
pub struct Pack {
    pub name: String,
    pub version: Version,
    pub description: String,
    /// Link keys the pack's arguments feed (plugins may add more).
    pub links: Vec<String>,
    /// Record only the outermost call into the library per thread.
    pub outermost_only: bool,
    /// Calls into other libraries that set captures while the pack's call is open.
    pub nested: Vec<Nested>,
    pub library: Library,
    pub probes: Vec<Probe>,
    pub variants: Vec<Variant>,
    pub enums: BTreeMap<String, EnumTable>,
    /// How `bthost report` reads the pack's calls (None: the pack has no groups of members).
    pub report: Option<ReportSpec>,
    /// How the work its calls enqueue completes (None: its calls do not enqueue work).
    pub completion: Option<completion::CompletionSpec>,
    /// The folder the manifest was read from.
    pub dir: PathBuf,
}

/// A pack's `[report]` section: its calls' groups, members and operation order, in its own
/// names (crate::report). Fields are event arguments: the pack's own, or those its plugin
/// adds (rccl's plugin numbers collectives: `seq`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSpec {
    /// The link key whose value is one group (rccl: `comm`).
    pub group: String,
    /// The field giving a call's member number in its group (`rank`).
    pub member: String,
    /// The field giving the group's size (`nranks`).
    pub size: Option<String>,
    /// The field numbering each member's operations in the group, from 1 (`seq`).
    pub order: String,
    /// Fields that must be equal across the members at one operation (`count`, `datatype`).
    pub matched: Vec<String>,
    /// The class of a disagreement in each matched field (`count` -> `size`): the report
    /// says "size mismatch"; a different call is a "collective type mismatch".
    pub classes: BTreeMap<String, String>,
    /// The field naming the other member of a point-to-point call (`peer`).
    pub peer: Option<String>,
    /// The point-to-point calls: those that send to `peer`, and those that receive from it.
    pub sends: Vec<String>,
    pub receives: Vec<String>,
}

impl Pack {
    /// The variant for bpftrace `v` and the library's version `lib` (None: unknown): the first
    /// whose bpftrace range matches and whose library range, if it has one, matches `lib`.
    pub fn variant_for(&self, v: &Version, lib: Option<&Version>) -> Option<&Variant> {
        self.variants
            .iter()
            .find(|x| x.range.matches(v) && LibRange::admits(&x.library, lib))
    }

    /// Whether some variant supports bpftrace `v`, whatever the library's version.
    pub fn supports_bpftrace(&self, v: &Version) -> bool {
        self.variants.iter().any(|x| x.range.matches(v))
    }

    /// The probes for the library's version `lib`: of a function's probes, the first whose
    /// library range matches `lib`, else its probe without a range (none: left out).
    pub fn probes_for(&self, lib: Option<&Version>) -> Vec<&Probe> {
        let mut out: Vec<&Probe> = Vec::new();
        for p in &self.probes {
            if out.iter().any(|q| q.function == p.function) {
                continue;
            }
            let same = || self.probes.iter().filter(|q| q.function == p.function);
            let pick = same()
                .find(|q| q.library.is_some() && LibRange::admits(&q.library, lib))
                .or_else(|| same().find(|q| q.library.is_none()));
            if let Some(q) = pick {
                out.push(q);
            }
        }
        out
    }

    /// The bpftrace ranges the pack supports, for messages.
    pub fn supported_ranges(&self) -> String {
        let r: Vec<_> = self
            .variants
            .iter()
            .map(|v| format!("\"{}\"", v.range_text))
            .collect();
        r.join(", ")
    }
}

/// The library a pack probes.
#[derive(Clone, Debug)]
pub struct Library {
    /// The name the dynamic linker knows it by, e.g. `libamdhip64.so.5`.
    pub soname: String,
    /// Other file names to try (e.g. the unversioned development link).
    pub also: Vec<String>,
    /// Where its version is read from (empty: not read).
    pub version_from: Vec<crate::library::version::Source>,
}

/// A variant of a pack's bpftrace code, for a range of bpftrace versions (and of the
/// library's, where struct offsets differ between its releases).
#[derive(Clone, Debug)]
pub struct Variant {
    pub range: VersionReq,
    pub range_text: String,
    pub library: Option<LibRange>,
    pub fragments: Vec<Fragment>,
    /// Whether a test has run this range (`tested = false`: written from bpftrace's CHANGELOG
    /// alone, as for 0.24-0.26, which no package this project can reach ships).
    pub tested: bool,
}

impl Variant {
    /// For messages: `bpftrace ">=0.17.0, <0.23.0", library ">=2.19"`.
    pub fn describe(&self) -> String {
        match &self.library {
            None => format!("bpftrace \"{}\"", self.range_text),
            Some(l) => format!("bpftrace \"{}\", library \"{}\"", self.range_text, l.text),
        }
    }
}

/// A range of the library's versions (`library = ">=2.19.0"`).
#[derive(Clone, Debug)]
pub struct LibRange {
    pub range: VersionReq,
    pub text: String,
}

impl LibRange {
    /// Whether `r` (None: any version) admits the library's version `lib` (None: unknown,
    /// which only a variant or probe without a range admits).
    pub fn admits(r: &Option<LibRange>, lib: Option<&Version>) -> bool {
        match (r, lib) {
            (None, _) => true,
            (Some(r), Some(v)) => r.range.matches(v),
            (Some(_), None) => false,
        }
    }
}

/// How a probe's call is recorded. `Call` and `Split` both write one record at exit (the
/// entry waits in a per-thread map, which END prints for calls still in flight); the mode
/// says what the call is, for readers and for later policies (e.g. flushing long waits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// A fast call.
    Call,
    /// A call that can block (synchronisation, collectives).
    Split,
    /// A function that does not return: a record at entry only.
    Entry,
}

impl ProbeMode {
    pub fn name(self) -> &'static str {
        match self {
            ProbeMode::Call => "call",
            ProbeMode::Split => "split",
            ProbeMode::Entry => "entry",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Probe {
    pub function: String,
    pub mode: ProbeMode,
    pub args: Vec<Arg>,
    pub ret: Option<Ret>,
    /// Some releases of the library lack the function; the conformance test allows its absence.
    pub optional: bool,
    /// The library versions this probe's layout is for (None: any).
    pub library: Option<LibRange>,
}

#[derive(Clone, Debug)]
pub struct Arg {
    pub name: String,
    pub ty: FieldType,
    /// The first argument slot (0-based; 6 and above are on the stack on x86-64).
    pub index: usize,
    /// An output parameter: a pointer read after the function returns.
    pub out: bool,
    pub link: Option<String>,
    pub enum_name: Option<String>,
    /// Read from somewhere other than the argument register at entry.
    pub from: Option<ArgFrom>,
    /// Read at exit from a capture a `[[nested]]` call set during the call.
    pub capture: Option<String>,
}

/// Where an argument read at entry comes from, when not from its register or stack slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgFrom {
    /// A scratch variable a fragment sets (`from = "$grid"`, without the `$`).
    Fragment(String),
    /// The call's return address (`from = "return_address"`): where the function was called
    /// from, symbolized offline as the caller (`ncclAllReduce` from `train_step`). It is the
    /// word at the stack pointer at entry, read before the kernel swaps in its uretprobe
    /// trampoline (which it does after the entry probes ran).
    ReturnAddress,
}

impl Arg {
    /// Whether the value is known only at the function's exit.
    pub fn at_exit(&self) -> bool {
        self.out || self.capture.is_some()
    }
}

/// A call into another library, made inside the pack's calls, that sets a capture.
#[derive(Clone, Debug)]
pub struct Nested {
    pub capture: String,
    pub library: String,
    pub function: String,
    pub index: usize,
    pub ty: FieldType,
    pub out: bool,
    pub success_only: bool,
}

#[derive(Clone, Debug)]
pub struct Ret {
    pub ty: FieldType,
    pub enum_name: Option<String>,
    pub link: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct EnumTable {
    pub values: BTreeMap<i64, String>,
}
