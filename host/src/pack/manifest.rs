//! `pack.toml`: what a pack probes, as data. Parsed strictly (unknown keys are errors) and
//! resolved into a checked [`Pack`]; every error names the file, the line and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};
use serde::Deserialize;
use toml::Spanned;

use crate::ident::{self, IdentKind};
use crate::library::version::Source;
use crate::pack::fragment::Fragment;
use crate::pack::types::FieldType;
use crate::pack::{
    Arg, ArgFrom, EnumTable, LibRange, Library, Nested, Pack, Probe, ProbeMode, ReportSpec, Ret,
    Variant,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    pack: RawPack,
    library: RawLibrary,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default, rename = "variant")]
    variants: Vec<RawVariant>,
    #[serde(default, rename = "probe")]
    probes: Vec<RawProbe>,
    #[serde(default)]
    enums: BTreeMap<Spanned<String>, BTreeMap<String, String>>,
    #[serde(default)]
    nested: Vec<RawNested>,
    report: Option<RawReport>,
    completion: Option<super::completion::RawCompletion>,
}

/// What `bthost report` needs to know of a pack's calls to explain a hang, in the pack's own
/// names (crate::report knows none): which link key groups members (a communicator's ranks),
/// which fields give a call's member, the group's size and the order of its operations, which
/// fields must agree across members at one operation, and which calls pair point to point.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    group: Spanned<String>,
    member: Spanned<String>,
    size: Option<Spanned<String>>,
    order: Spanned<String>,
    #[serde(default)]
    matched: Vec<Spanned<String>>,
    /// The class of a disagreement in a matched field (`count = "size"`).
    #[serde(default)]
    classes: BTreeMap<Spanned<String>, String>,
    peer: Option<Spanned<String>>,
    #[serde(default)]
    sends: Vec<Spanned<String>>,
    #[serde(default)]
    receives: Vec<Spanned<String>>,
}

/// A call into another library, made inside this pack's calls, that sets a per-thread value
/// (a capture) the pack's records can read, without writing a record of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNested {
    capture: Spanned<String>,
    library: Spanned<String>,
    function: Spanned<String>,
    /// Which argument slot holds the value (`out = true`: a pointer read after return).
    index: usize,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    #[serde(default)]
    out: bool,
    /// Keep the value only when the call returned 0 (success in most C APIs).
    #[serde(default)]
    success_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    name: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    links: Vec<Spanned<String>>,
    /// Record only the outermost call into the library per thread: the library's calls into
    /// its own API cost no log (calls into other packs' libraries stay visible inside).
    #[serde(default)]
    outermost_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLibrary {
    soname: Spanned<String>,
    #[serde(default)]
    also: Vec<Spanned<String>>,
    /// Where the library's version is read from (crate::library::version), for variants and
    /// probes that carry `library = "RANGE"`.
    #[serde(default)]
    version_from: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    ret: Option<Spanned<RawRet>>,
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    bpftrace: Spanned<String>,
    /// The library versions this variant is for (its fragments' struct offsets, say).
    library: Option<Spanned<String>>,
    #[serde(default)]
    fragments: Vec<Spanned<String>>,
    /// Whether a test has run this range (false: the code follows bpftrace's documentation).
    #[serde(default = "yes")]
    tested: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    function: Spanned<String>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<RawArg>,
    ret: Option<Spanned<RawRet>>,
    /// Some releases of the library lack this function (build leaves the probe out).
    #[serde(default)]
    optional: bool,
    /// The library versions this probe's layout is for; a function may have one probe per range.
    library: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArg {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    index: Option<usize>,
    #[serde(default)]
    out: bool,
    link: Option<Spanned<String>>,
    #[serde(rename = "enum")]
    enum_name: Option<Spanned<String>>,
    /// A scratch variable a hand-written fragment sets, read instead of the argument register,
    /// or "return_address" (the call site).
    from: Option<Spanned<String>>,
    /// A value learnt from a `[[nested]]` call during this call, read at its exit.
    capture: Option<Spanned<String>>,
}

/// `ret = "none"` (void), `ret = "i32"`, or `ret = { type = "i32", enum = "E", link = "K" }`.
/// (Spans do not survive serde's untagged enums, so the whole value carries one.)
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawRet {
    Short(String),
    Full(RawRetFull),
}

/// The table form of `ret`, strict like every other table (an unknown key is an error, not
/// silently a plain integer).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRetFull {
    #[serde(rename = "type")]
    ty: String,
    #[serde(rename = "enum")]
    enum_name: Option<String>,
    link: Option<String>,
}

/// A manifest error: file, line and message.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {msg}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: usize,
    pub msg: String,
}

/// Builds errors that point into one manifest's text.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        msg: impl Into<String>,
    ) -> Result<T, ManifestError> {
        let line = self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        Err(ManifestError {
            file: self.file.to_path_buf(),
            line,
            msg: msg.into(),
        })
    }

    fn ident(&self, kind: IdentKind, s: &Spanned<String>) -> Result<String, ManifestError> {
        match ident::check(kind, s.get_ref()) {
            Ok(()) => Ok(s.get_ref().clone()),
            Err(e) => self.err(s.span(), e.to_string()),
        }
    }
}

/// Reads and checks `dir/pack.toml` and the fragment files it names.
pub fn load(dir: &Path) -> Result<Pack, ManifestError> {
    let file = dir.join("pack.toml");
    let text = std::fs::read_to_string(&file).map_err(|e| ManifestError {
        file: file.clone(),
        line: 0,
        msg: format!("cannot read: {e}"),
    })?;
    parse(dir, &file, &text)
}

/// Parses a manifest's text; `file` is used in messages, `dir` to find fragments.
pub fn parse(dir: &Path, file: &Path, text: &str) -> Result<Pack, ManifestError> {
    parse_with(dir, file, text, &|p| std::fs::read_to_string(p))
}

/// [`parse`], reading the pack's other files (fragments) with `read` (the binary's built-in
/// packs have no folder: crate::registry::builtin).
pub fn parse_with(
    dir: &Path,
    file: &Path,
    text: &str,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Pack, ManifestError> {
    let cx = Ctx { file, text };
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        let msg = if e.message().contains("untagged enum RawRet") {
            "`ret`: expected \"none\", a type like \"i32\", or a table with exactly `type` and optionally `enum` and `link`: { type = \"i32\", enum = \"myError_t\" }".to_string()
        } else {
            e.message().to_string()
        };
        ManifestError {
            file: file.to_path_buf(),
            line,
            msg,
        }
    })?;

    let name = cx.ident(IdentKind::Pack, &raw.pack.name)?;
    let version = Version::parse(raw.pack.version.get_ref()).or_else(|e| {
        cx.err(
            raw.pack.version.span(),
            format!(
                "version {:?} is not semver (e.g. \"0.1.0\"): {e}",
                raw.pack.version.get_ref()
            ),
        )
    })?;
    let mut links = Vec::new();
    for l in &raw.pack.links {
        links.push(cx.ident(IdentKind::Field, l)?);
    }

    let library = Library {
        soname: library_name(&cx, &raw.library.soname)?,
        also: raw
            .library
            .also
            .iter()
            .map(|n| library_name(&cx, n))
            .collect::<Result<_, _>>()?,
        version_from: raw
            .library
            .version_from
            .iter()
            .map(|s| Source::parse(s.get_ref()).or_else(|e| cx.err(s.span(), e)))
            .collect::<Result<_, _>>()?,
    };
    // A `library = "RANGE"` needs the library's version: say so where it is written.
    let lib_range = |r: &Option<Spanned<String>>| -> Result<Option<LibRange>, ManifestError> {
        let Some(r) = r else { return Ok(None) };
        if library.version_from.is_empty() {
            return cx.err(
                r.span(),
                "`library = \"RANGE\"` needs [library] version_from = [\"file\"] or [\"text:PREFIX\"]: where the library's version is read from",
            );
        }
        let range = VersionReq::parse(r.get_ref()).or_else(|e| {
            cx.err(
                r.span(),
                format!(
                    "library range {:?} is not a semver range (e.g. \">=2.19.0, <3\"): {e}",
                    r.get_ref()
                ),
            )
        })?;
        Ok(Some(LibRange {
            range,
            text: r.get_ref().clone(),
        }))
    };

    let mut enums = BTreeMap::new();
    for (ename, table) in &raw.enums {
        let ename_s = cx.ident(IdentKind::Field, ename)?;
        let mut values = BTreeMap::new();
        for (k, v) in table {
            let Ok(raw_v) = k.parse::<i64>() else {
                return cx.err(
                    ename.span(),
                    format!("enum {ename_s}: key {k:?} is not an integer (write `0 = \"name\"`)"),
                );
            };
            if ident::check(IdentKind::Field, v).is_err() {
                return cx.err(
                    ename.span(),
                    format!("enum {ename_s}: value name {v:?} is not an identifier"),
                );
            }
            values.insert(raw_v, v.clone());
        }
        enums.insert(ename_s, EnumTable { values });
    }

    let mut nested = Vec::new();
    for n in &raw.nested {
        let capture = cx.ident(IdentKind::Field, &n.capture)?;
        let ty = field_type(&cx, &n.ty)?;
        if ty.slots() != 1 || (n.out && ty.bpftrace_pointee().is_none()) {
            return cx.err(
                n.ty.span(),
                format!("a nested capture cannot be of type {ty}"),
            );
        }
        if n.index >= 6 {
            return cx.err(
                n.capture.span(),
                "a nested capture reads one of the first 6 arguments",
            );
        }
        if !raw.pack.outermost_only {
            return cx.err(
                n.capture.span(),
                "[[nested]] needs `outermost_only = true` in [pack]: captures are taken while the pack's outermost call is open",
            );
        }
        nested.push(Nested {
            capture,
            library: library_name(&cx, &n.library)?,
            function: cx.ident(IdentKind::Symbol, &n.function)?,
            index: n.index,
            ty,
            out: n.out,
            success_only: n.success_only,
        });
    }

    let default_mode = match &raw.defaults.mode {
        Some(m) => mode(&cx, m)?,
        None => ProbeMode::Call,
    };
    let mut probes = Vec::new();
    let mut seen = BTreeMap::new();
    for p in &raw.probes {
        let function = cx.ident(IdentKind::Symbol, &p.function)?;
        let library_range = lib_range(&p.library)?;
        // One probe per function, or one per library range (each with `library`).
        let versioned = library_range.is_some();
        if let Some(prev_versioned) = seen.insert(function.clone(), versioned) {
            if !(versioned && prev_versioned) {
                return cx.err(
                    p.function.span(),
                    format!("probe {function} is declared twice (several probes of one function each need `library = \"RANGE\"`: one layout per library version)"),
                );
            }
        }
        let probe_mode = match &p.mode {
            Some(m) => mode(&cx, m)?,
            None => default_mode,
        };
        let mut args = Vec::new();
        let mut next_index = 0;
        for a in &p.args {
            let arg = resolve_arg(&cx, a, &mut next_index, &links, &enums, &nested)?;
            if args.iter().any(|x: &Arg| x.name == arg.name) || arg.name == "ret" {
                return cx.err(
                    a.name.span(),
                    format!("argument name {} is used twice", arg.name),
                );
            }
            if arg.at_exit() && probe_mode == ProbeMode::Entry {
                return cx.err(
                    a.name.span(),
                    "an `out` or `capture` argument is read at the function's exit; mode \"entry\" has none",
                );
            }
            args.push(arg);
        }
        let ret = match p.ret.as_ref().or(raw.defaults.ret.as_ref()) {
            None => None,
            Some(r) => resolve_ret(&cx, r, &links, &enums)?,
        };
        if ret.is_some() && probe_mode == ProbeMode::Entry {
            return cx.err(
                p.function.span(),
                "mode \"entry\" records no return value: set `ret = \"none\"`",
            );
        }
        probes.push(Probe {
            function,
            mode: probe_mode,
            args,
            ret,
            optional: p.optional,
            library: library_range,
        });
    }
    if probes.is_empty() {
        return cx.err(0..0, "the pack declares no [[probe]]");
    }

    if raw.variants.is_empty() {
        return cx.err(
            0..0,
            "the pack declares no [[variant]]: each needs `bpftrace = \">=0.17.0, <0.23.0\"` (the versions it works with)",
        );
    }
    let mut variants = Vec::new();
    for v in &raw.variants {
        let range = VersionReq::parse(v.bpftrace.get_ref()).or_else(|e| {
            cx.err(
                v.bpftrace.span(),
                format!(
                    "bpftrace range {:?} is not a semver range (e.g. \">=0.17.0, <0.23.0\"): {e}",
                    v.bpftrace.get_ref()
                ),
            )
        })?;
        let mut fragments = Vec::new();
        for f in &v.fragments {
            let rel = f.get_ref();
            if rel.contains("..") || rel.starts_with('/') {
                return cx.err(
                    f.span(),
                    format!("fragment {rel:?} must be a path inside the pack folder"),
                );
            }
            let path = dir.join(rel);
            let text = read(&path).or_else(|e| {
                cx.err(
                    f.span(),
                    format!("cannot read fragment {}: {e}", path.display()),
                )
            })?;
            let frag = Fragment::parse(&path, &text).map_err(|e| ManifestError {
                file: path.clone(),
                line: e.line,
                msg: e.msg,
            })?;
            for sec in &frag.sections {
                if !probes.iter().any(|p| p.function == sec.function) {
                    return Err(ManifestError {
                        file: path.clone(),
                        line: sec.line,
                        msg: format!(
                            "section for {}, which pack.toml does not declare as a [[probe]]",
                            sec.function
                        ),
                    });
                }
            }
            fragments.push(frag);
        }
        variants.push(Variant {
            range,
            range_text: v.bpftrace.get_ref().clone(),
            library: lib_range(&v.library)?,
            fragments,
            tested: v.tested,
        });
    }

    let report = match &raw.report {
        None => None,
        Some(r) => Some(resolve_report(&cx, r, &links, &probes)?),
    };

    let completion = match &raw.completion {
        None => None,
        Some(c) => {
            let fields = |f: &str| {
                let mut out: Option<Vec<String>> = None;
                for p in probes.iter().filter(|p| p.function == f) {
                    out.get_or_insert_with(Vec::new)
                        .extend(p.args.iter().map(|a| a.name.clone()));
                }
                out
            };
            let probed = super::completion::Probed {
                fields: &fields,
                links: &links,
            };
            match super::completion::resolve(c, &probed) {
                Ok(spec) => Some(spec),
                Err((span, msg)) => return cx.err(span, msg),
            }
        }
    };

    Ok(Pack {
        name,
        version,
        description: raw.pack.description,
        report,
        completion,
        links,
        outermost_only: raw.pack.outermost_only,
        nested,
        library,
        probes,
        variants,
        enums,
        dir: dir.to_path_buf(),
    })
}

fn resolve_report(
    cx: &Ctx,
    r: &RawReport,
    links: &[String],
    probes: &[Probe],
) -> Result<ReportSpec, ManifestError> {
    let group = cx.ident(IdentKind::Field, &r.group)?;
    if !links.contains(&group) {
        return cx.err(
            r.group.span(),
            format!(
                "[report] group {group:?} is not one of the pack's link keys ({})",
                links.join(", ")
            ),
        );
    }
    let field = |s: &Spanned<String>| cx.ident(IdentKind::Field, s);
    let function = |s: &Spanned<String>| -> Result<String, ManifestError> {
        let f = cx.ident(IdentKind::Symbol, s)?;
        if !probes.iter().any(|p| p.function == f) {
            return cx.err(
                s.span(),
                format!("[report] {f} is not one of the pack's probes"),
            );
        }
        Ok(f)
    };
    let sends = r
        .sends
        .iter()
        .map(function)
        .collect::<Result<Vec<_>, _>>()?;
    let receives = r
        .receives
        .iter()
        .map(function)
        .collect::<Result<Vec<_>, _>>()?;
    if (sends.is_empty() != receives.is_empty()) || (!sends.is_empty() && r.peer.is_none()) {
        return cx.err(
            r.group.span(),
            "[report] point-to-point calls need `sends`, `receives` and `peer` together",
        );
    }
    let matched: Vec<String> = r.matched.iter().map(field).collect::<Result<_, _>>()?;
    let mut classes = BTreeMap::new();
    for (f, class) in &r.classes {
        if !matched.contains(f.get_ref()) {
            return cx.err(
                f.span(),
                format!(
                    "[report] classes names {:?}, which is not one of `matched` ({})",
                    f.get_ref(),
                    matched.join(", ")
                ),
            );
        }
        if class.is_empty() || class.len() > 40 || class.chars().any(|c| c.is_control()) {
            return cx.err(
                f.span(),
                "[report] a class is a short name (at most 40 characters), like \"size\"",
            );
        }
        classes.insert(f.get_ref().clone(), class.clone());
    }
    Ok(ReportSpec {
        group,
        member: field(&r.member)?,
        size: r.size.as_ref().map(field).transpose()?,
        order: field(&r.order)?,
        matched,
        classes,
        peer: r.peer.as_ref().map(field).transpose()?,
        sends,
        receives,
    })
}

fn library_name(cx: &Ctx, s: &Spanned<String>) -> Result<String, ManifestError> {
    let n = s.get_ref();
    if n.is_empty()
        || n.contains('/')
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    {
        return cx.err(
            s.span(),
            format!("library name {n:?} must be a file name like \"libamdhip64.so.5\""),
        );
    }
    Ok(n.clone())
}

fn mode(cx: &Ctx, m: &Spanned<String>) -> Result<ProbeMode, ManifestError> {
    match m.get_ref().as_str() {
        "call" => Ok(ProbeMode::Call),
        "split" => Ok(ProbeMode::Split),
        "entry" => Ok(ProbeMode::Entry),
        other => cx.err(
            m.span(),
            format!("mode {other:?}; expected \"call\" (a fast call), \"split\" (a call that can block) or \"entry\" (a function that does not return)"),
        ),
    }
}

fn field_type(cx: &Ctx, s: &Spanned<String>) -> Result<FieldType, ManifestError> {
    s.get_ref().parse().or_else(|e: String| cx.err(s.span(), e))
}

fn link_key(
    cx: &Ctx,
    l: &Option<Spanned<String>>,
    links: &[String],
) -> Result<Option<String>, ManifestError> {
    let Some(l) = l else { return Ok(None) };
    let key = cx.ident(IdentKind::Field, l)?;
    if !links.contains(&key) {
        return cx.err(
            l.span(),
            format!("link key {key:?} is not declared in [pack] links = {links:?}"),
        );
    }
    Ok(Some(key))
}

fn enum_ref(
    cx: &Ctx,
    e: &Option<Spanned<String>>,
    ty: FieldType,
    enums: &BTreeMap<String, EnumTable>,
) -> Result<Option<String>, ManifestError> {
    let Some(e) = e else { return Ok(None) };
    let name = cx.ident(IdentKind::Field, e)?;
    if !enums.contains_key(&name) {
        return cx.err(
            e.span(),
            format!("enum {name:?} has no [enums.{name}] table"),
        );
    }
    if !ty.takes_enum() {
        return cx.err(
            e.span(),
            format!("an enum needs an integer type (or ptr, to name special handles), not {ty}"),
        );
    }
    Ok(Some(name))
}

fn resolve_arg(
    cx: &Ctx,
    a: &RawArg,
    next_index: &mut usize,
    links: &[String],
    enums: &BTreeMap<String, EnumTable>,
    nested: &[Nested],
) -> Result<Arg, ManifestError> {
    let name = cx.ident(IdentKind::Field, &a.name)?;
    let capture = match &a.capture {
        None => None,
        Some(c) => {
            let c_name = cx.ident(IdentKind::Field, c)?;
            if !nested.iter().any(|n| n.capture == c_name) {
                return cx.err(
                    c.span(),
                    format!("capture {c_name:?} has no [[nested]] entry that sets it"),
                );
            }
            if a.out || a.from.is_some() {
                return cx.err(c.span(), "`capture` takes no `out` and no `from`");
            }
            Some(c_name)
        }
    };
    let ty = field_type(cx, &a.ty)?;
    // The call site is no argument slot: it neither takes nor advances one.
    if let Some(f) = a.from.as_ref().filter(|f| f.get_ref() == "return_address") {
        if ty != FieldType::Code || a.out || a.index.is_some() || capture.is_some() {
            return cx.err(
                f.span(),
                "`from = \"return_address\"` takes `type = \"code\"`, and no `out`, `index` or `capture`",
            );
        }
        return Ok(Arg {
            name,
            ty,
            index: 0,
            capture: None,
            out: false,
            link: link_key(cx, &a.link, links)?,
            enum_name: enum_ref(cx, &a.enum_name, ty, enums)?,
            from: Some(ArgFrom::ReturnAddress),
        });
    }
    let index = a.index.unwrap_or(*next_index);
    if index + ty.slots() > 16 {
        return cx.err(
            a.name.span(),
            format!("argument index {index} is beyond the 16 supported"),
        );
    }
    if capture.is_none() {
        *next_index = index + ty.slots();
    }
    if a.out && ty.bpftrace_pointee().is_none() {
        return cx.err(
            a.ty.span(),
            format!("type {ty} cannot be an `out` argument"),
        );
    }
    let from = match &a.from {
        None => None,
        Some(f) => {
            let v = f.get_ref();
            let Some(var) = v.strip_prefix('$') else {
                return cx.err(
                    f.span(),
                    format!(
                        "`from = {v:?}`: expected a fragment's scratch variable like \"$grid\", or \"return_address\" (the call site)"
                    ),
                );
            };
            cx.ident(IdentKind::Field, &Spanned::new(f.span(), var.to_string()))?;
            if ty.slots() != 1 || a.out {
                return cx.err(f.span(), "`from` takes a one-slot type and no `out`");
            }
            Some(ArgFrom::Fragment(var.to_string()))
        }
    };
    Ok(Arg {
        name,
        ty,
        index,
        capture,
        out: a.out,
        link: link_key(cx, &a.link, links)?,
        enum_name: enum_ref(cx, &a.enum_name, ty, enums)?,
        from,
    })
}

fn resolve_ret(
    cx: &Ctx,
    r: &Spanned<RawRet>,
    links: &[String],
    enums: &BTreeMap<String, EnumTable>,
) -> Result<Option<Ret>, ManifestError> {
    let span = r.span();
    let at = |s: &String| Spanned::new(span.clone(), s.clone());
    match r.get_ref() {
        RawRet::Short(s) if s == "none" => Ok(None),
        RawRet::Short(s) => {
            let t = field_type(cx, &at(s))?;
            if t.slots() != 1 {
                return cx.err(span, format!("a return value cannot be of type {t}"));
            }
            Ok(Some(Ret {
                ty: t,
                enum_name: None,
                link: None,
            }))
        }
        RawRet::Full(RawRetFull {
            ty,
            enum_name,
            link,
        }) => {
            let t = field_type(cx, &at(ty))?;
            if t.slots() != 1 {
                return cx.err(span, format!("a return value cannot be of type {t}"));
            }
            Ok(Some(Ret {
                ty: t,
                enum_name: enum_ref(cx, &enum_name.as_ref().map(at), t, enums)?,
                link: link_key(cx, &link.as_ref().map(at), links)?,
            }))
        }
    }
}
