//! `bthost new-pack NAME --lib SONAME|PATH [--plugin]`: the start of a pack for a new library
//! (or an application's own functions): `packs/NAME/pack.toml` with every function the file
//! defines listed as a commented-out probe to pick from, and with `--plugin` a decoder crate
//! `plugins/NAME/` wired into the workspace, whose unit test passes as generated.
//! docs/writing-a-pack.md goes on from there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSymbol, SymbolKind};

use crate::ident::{self, IdentKind};
use crate::library::LdCache;
use crate::registry::Registry;

/// What to scaffold.
pub struct NewPack {
    pub name: String,
    /// A library name the dynamic linker knows (`libcudart.so.12`) or a path to an ELF file.
    pub lib: String,
    pub plugin: bool,
    /// The source tree to write into (default: the one around the current folder).
    pub root: Option<PathBuf>,
}

/// What was written, and what to do next.
pub struct Scaffolded {
    pub files: Vec<PathBuf>,
    pub next_steps: String,
}

/// The library (or executable) a pack is started for.
struct Target {
    path: PathBuf,
    /// What pack.toml's `[library] soname` says: the ELF's DT_SONAME, else its file name.
    soname: String,
    executable: bool,
    functions: Vec<String>,
    /// Functions not listed (C++ mangled names, compiler helpers): how many.
    hidden: usize,
}

pub fn scaffold(reg: &Registry, req: &NewPack) -> Result<Scaffolded> {
    if let Err(e) = ident::check(IdentKind::Pack, &req.name) {
        bail!("new-pack {:?}: {e}", req.name);
    }
    let root = match &req.root {
        Some(r) => r.clone(),
        None => find_root(&std::env::current_dir()?),
    };
    let pack_dir = root.join("packs").join(&req.name);
    if pack_dir.exists() {
        bail!("{} exists: choose another name", pack_dir.display());
    }
    if let Some(e) = reg.entries.get(&req.name) {
        bail!(
            "a pack named {} exists ({}): choose another name",
            req.name,
            e.pack.dir.display()
        );
    }
    let plugin_dir = root.join("plugins").join(&req.name);
    let workspace = root.join("Cargo.toml");
    if req.plugin {
        if plugin_dir.exists() {
            bail!("{} exists: choose another name", plugin_dir.display());
        }
        if !root.join("plugin-api").is_dir() || !workspace.is_file() {
            bail!(
                "--plugin needs bthost's source tree (a Cargo workspace with plugin-api/): {} is not one; run new-pack inside it, or give --root",
                root.display()
            );
        }
    }
    let target = read_target(&req.lib)?;

    let mut files = Vec::new();
    std::fs::create_dir_all(&pack_dir)
        .with_context(|| format!("cannot create {}", pack_dir.display()))?;
    let manifest = pack_dir.join("pack.toml");
    std::fs::write(&manifest, pack_toml(&req.name, &target))
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    files.push(manifest);
    if req.plugin {
        for (rel, text) in plugin_files(&req.name) {
            let p = plugin_dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("a file in a folder"))?;
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
            files.push(p);
        }
        add_to_workspace(&workspace, &format!("plugins/{}", req.name))?;
        files.push(workspace);
    }
    Ok(Scaffolded {
        next_steps: next_steps(&req.name, &target, req.plugin, &root),
        files,
    })
}

/// The enclosing bthost source tree (a folder with `packs/` and `plugin-api/`), else `dir`.
fn find_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join("packs").is_dir() && d.join("plugin-api").is_dir())
        .unwrap_or(dir)
        .to_path_buf()
}

fn read_target(lib: &str) -> Result<Target> {
    let path = if lib.contains('/') {
        PathBuf::from(lib)
    } else {
        LdCache::load()
            .lookup(lib)
            .map(Path::to_path_buf)
            .with_context(|| {
                format!(
                    "--lib {lib}: the dynamic linker does not know it (ldconfig -p); give its path"
                )
            })?
    };
    let data = crate::library::mapped::Mapped::open(&path)
        .with_context(|| format!("--lib {}", path.display()))?;
    let file = object::File::parse(data.bytes()).map_err(|e| {
        anyhow::anyhow!(
            "--lib {}: not an ELF file bthost can probe: {e}",
            path.display()
        )
    })?;
    let soname = crate::library::deps::read(&path)
        .map_err(anyhow::Error::msg)?
        .soname;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let executable = soname.is_none() && file.entry() != 0 && !file_name.contains(".so");
    // A library's API is what it exports; an executable's own functions are in its symbol
    // table (exported only with -rdynamic).
    let mut names = std::collections::BTreeSet::new();
    let syms: Vec<_> = if executable {
        file.symbols().chain(file.dynamic_symbols()).collect()
    } else {
        file.dynamic_symbols().collect()
    };
    for s in syms {
        if s.is_definition() && s.kind() == SymbolKind::Text && s.is_global() && s.size() > 0 {
            if let Ok(n) = s.name() {
                names.insert(n.to_string());
            }
        }
    }
    let total = names.len();
    let functions: Vec<String> = names
        .into_iter()
        .filter(|n| listed(n, executable))
        .collect();
    Ok(Target {
        hidden: total - functions.len(),
        soname: soname.unwrap_or(file_name),
        executable,
        functions,
        path,
    })
}

/// Whether `name` is worth offering as a probe: a C identifier, not a runtime helper.
fn listed(name: &str, executable: bool) -> bool {
    const CRT: &[&str] = &["_start", "_init", "_fini", "main"];
    ident::check(IdentKind::Symbol, name).is_ok()
        && !name.starts_with('_')
        && !(executable && CRT.contains(&name) && name != "main")
}

fn pack_toml(name: &str, t: &Target) -> String {
    let mut s = String::new();
    let what = if t.executable {
        "the program"
    } else {
        "the library"
    };
    let _ = writeln!(
        s,
        "# The {name} pack: probes on {what} {} ({}).\n\
         # Written by `bthost new-pack`; docs/writing-a-pack.md says what every key means.\n\
         # Uncomment the probes you want (at least one) and give each its arguments, from the\n\
         # function's C declaration: `args = [{{ name = \"n\", type = \"i32\" }}]`; types: i8 u8 i16 u16\n\
         # i32 u32 i64 u64 size ptr code bool f32 f64 dim3. A call that can block is mode \"split\".\n",
        t.soname,
        t.path.display()
    );
    let _ = writeln!(
        s,
        "[pack]\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"probes on {} {}\"\n\
         # Link keys: arguments with `link = \"KEY\"` join calls sharing a value in the traces.\nlinks = []\n",
        what.trim_start_matches("the "),
        t.soname
    );
    let _ = writeln!(s, "[library]\nsoname = \"{}\"", t.soname);
    if t.executable {
        let _ = writeln!(
            s,
            "# A program, not a library: give its path when tracing (--lib {name}={}).",
            t.path.display()
        );
    }
    let _ = writeln!(
        s,
        "\n[defaults]\nmode = \"call\"\nret = \"none\" # e.g. ret = {{ type = \"i32\", enum = \"myError_t\" }}\n"
    );
    let _ = writeln!(
        s,
        "# The bpftrace releases each variant was checked with (the conformance test checks them).\n\
         [[variant]]\nbpftrace = \">=0.17.0, <0.23.0\"\n\n[[variant]]\nbpftrace = \">=0.23.0, <0.24.0\"\n\n\
         # 0.24-0.26: untested (no package ships them); the script follows bpftrace's CHANGELOG.\n\
         [[variant]]\nbpftrace = \">=0.24.0, <0.27.0\"\ntested = false\n\n[[variant]]\nbpftrace = \">=0.27.0, <0.28.0\"\n"
    );
    let _ = writeln!(
        s,
        "# --- the {} functions {} defines{} ---\n",
        t.functions.len(),
        t.soname,
        if t.hidden > 0 {
            format!(" ({} more, C++ or internal, not listed)", t.hidden)
        } else {
            String::new()
        }
    );
    for f in &t.functions {
        let _ = writeln!(s, "# [[probe]]\n# function = \"{f}\"\n");
    }
    s
}

fn next_steps(name: &str, t: &Target, plugin: bool, root: &Path) -> String {
    let lib = if t.executable || !t.path.starts_with("/usr") && !t.path.starts_with("/lib") {
        format!(" --lib {name}={}", t.path.display())
    } else {
        String::new()
    };
    // Outside bthost's source tree the folder of packs is not searched unless named.
    let in_tree = root.join("plugin-api").is_dir();
    let packs = if in_tree {
        String::new()
    } else {
        format!(" --pack-path {}", root.join("packs").display())
    };
    let manifest = root.join("packs").join(name).join("pack.toml");
    let mut s = format!(
        "next:\n  1. edit {}: uncomment the probes you want and give their arguments\n  2. bthost build{packs} --packs {name}{lib} -o {name}.bt        # the script, and what was left out\n  3. bthost record{packs} --packs {name}{lib} -o {name}.log -- PROGRAM   # as root\n  4. bthost convert{packs} {name}.log\n",
        manifest.display()
    );
    if plugin {
        let _ = write!(
            s,
            "  5. cargo test -p bthost-pack-{name}      # the decoder's unit test (plugins/{name}/src/lib.rs)\n  6. cargo build -p bthost-pack-{name}     # bthost finds the plugin beside it in target/\n"
        );
    }
    if in_tree {
        s.push_str("  the conformance test checks the pack on every bpftrace here: cargo test -p bthost-tests --test conformance\n");
    }
    s.push_str("  guide: docs/writing-a-pack.md\n");
    s
}

/// Adds `member` to the workspace's `members` (and `default-members`, if it has them).
fn add_to_workspace(file: &Path, member: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut out = text.clone();
    for key in ["default-members", "members"] {
        let Some(at) = find_key(&out, key) else {
            if key == "members" {
                bail!("{}: no `members = [...]` in [workspace]", file.display());
            }
            continue;
        };
        let close = at
            + out[at..]
                .find(']')
                .with_context(|| format!("{}: `{key}` has no closing ]", file.display()))?;
        let inner = out[at..close].trim_end();
        let sep = if inner.ends_with('[') || inner.ends_with(',') {
            ""
        } else {
            ", "
        };
        out.insert_str(close, &format!("{sep}\"{member}\""));
    }
    // The edit must still be the workspace it was, plus the member.
    let parsed: toml::Value = toml::from_str(&out)
        .with_context(|| format!("{}: adding {member} broke it", file.display()))?;
    let has = parsed
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(member)));
    if !has {
        bail!("{}: could not add {member} to members", file.display());
    }
    std::fs::write(file, out).with_context(|| format!("cannot write {}", file.display()))
}

/// The byte offset just after `KEY = [` at the start of a line.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(key) {
            let rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('=') {
                if let Some(b) = r.find('[') {
                    return Some(pos + (line.len() - r.len()) + b + 1);
                }
            }
        }
        pos += line.len();
    }
    None
}

fn plugin_files(name: &str) -> Vec<(&'static str, String)> {
    let ty = camel(name);
    let cargo = format!(
        r#"[package]
# The version is the pack's (packs/{name}/pack.toml): the host loads the plugin only for it.
name = "bthost-pack-{name}"
version = "0.1.0"
description = "bthost plugin for the {name} pack"
edition.workspace = true
license.workspace = true

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
bthost-plugin-api = {{ path = "../../plugin-api" }}
# abi_stable's export macro names it from the crate root.
abi_stable.workspace = true
"#
    );
    let lib = format!(
        r#"//! The `{name}` pack's plugin: decoding its records where pack.toml cannot say enough.
//! Written by `bthost new-pack`: the decoder below numbers each thread's calls of each
//! function (`nth`), an example to replace with what the library needs (docs/writing-a-pack.md,
//! "Plugins"). bthost loads the built library (target/*/libbthost_pack_{name}.so) when it sits
//! beside the bthost binary, in <prefix>/lib/bthost/plugins, or in the pack's folder.
#![allow(non_local_definitions)]

use std::collections::HashMap;

use abi_stable::std_types::{{RResult, RString, RVec}};
use bthost_plugin_api::{{
    abi_stable::sabi_trait::TD_Opaque, Arg, Decoder, DecoderBox, DecoderConfig, Decoder_TO,
    Event, Phase, PluginInfo, Record, Value, ABI_VERSION,
}};

/// The pack version this plugin decodes (must equal packs/{name}/pack.toml's).
pub const PACK_VERSION: &str = env!("CARGO_PKG_VERSION");

pub extern "C" fn info() -> PluginInfo {{
    PluginInfo {{
        pack: "{name}".into(),
        pack_version: PACK_VERSION.into(),
        abi_version: ABI_VERSION.into(),
        // Link keys the decoder sets beyond those pack.toml declares.
        links: RVec::new(),
    }}
}}

pub extern "C" fn new_decoder(_cfg: &DecoderConfig) -> RResult<DecoderBox, RString> {{
    RResult::ROk(Decoder_TO::from_value({ty}Decoder::default(), TD_Opaque))
}}

bthost_plugin_api::export_pack_plugin!(info, new_decoder);

/// Fed every record of the pack in log order (per thread: in time order).
#[derive(Default, Debug)]
pub struct {ty}Decoder {{
    /// (tid, function) -> calls seen.
    calls: HashMap<(u32, String), u64>,
}}

impl Decoder for {ty}Decoder {{
    /// `out` holds the host's decoding of `rec` (usually one event): edit it, add to it, or
    /// clear it. An `Err` is reported with the record's line, and `out` is kept.
    fn on_record(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) -> RResult<(), RString> {{
        // A call's entry (a call still in flight) is numbered when its exit comes.
        if rec.phase == Phase::Entry {{
            return RResult::ROk(());
        }}
        let n = self
            .calls
            .entry((rec.tid, rec.probe.as_str().to_string()))
            .or_default();
        *n += 1;
        for e in out.iter_mut() {{
            e.args.push(Arg {{
                name: "nth".into(),
                value: Value::UInt(*n),
            }});
        }}
        RResult::ROk(())
    }}

    /// The log ended: append any events still held (this decoder holds none).
    fn finish(&mut self, _out: &mut RVec<Event>) {{}}
}}

#[cfg(test)]
mod tests {{
    use super::*;
    use abi_stable::std_types::{{RSlice, RStr}};
    use bthost_plugin_api::EventKind;

    fn record<'a>(probe: &'a str, tid: u32, fields: &'a [Arg]) -> Record<'a> {{
        Record {{
            line: 1,
            probe: RStr::from_str(probe),
            phase: Phase::Call,
            pid: 7,
            tid,
            ts: 1_000,
            dur: 50,
            fields: RSlice::from_slice(fields),
        }}
    }}

    fn draft(name: &'static str, tid: u32) -> Event {{
        Event {{
            kind: EventKind::Complete,
            pid: 7,
            tid,
            ts: 1_000,
            dur: 50,
            name: name.into(),
            pack: "{name}".into(),
            args: RVec::new(),
            links: RVec::new(),
        }}
    }}

    #[test]
    fn calls_are_numbered_per_thread_and_function() {{
        let mut d = {ty}Decoder::default();
        let mut seen = Vec::new();
        for (f, tid) in [("f", 1), ("f", 1), ("g", 1), ("f", 2)] {{
            let mut out = RVec::from(vec![draft(f, tid)]);
            assert!(d.on_record(&record(f, tid, &[]), &mut out).is_ok());
            seen.push(out[0].arg("nth").and_then(|v| v.as_u64()));
        }}
        assert_eq!(seen, [Some(1), Some(2), Some(1), Some(1)]);
    }}

    #[test]
    fn the_plugin_says_its_pack_and_abi() {{
        let i = info();
        assert_eq!(i.pack.as_str(), "{name}");
        assert!(bthost_plugin_api::abi_compatible(ABI_VERSION, i.abi_version.as_str()));
    }}
}}
"#
    );
    vec![("Cargo.toml", cargo), ("src/lib.rs", lib)]
}

/// `my_lib` -> `MyLib`.
fn camel(name: &str) -> String {
    name.split(['_', '-'])
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_added_once_to_each_list() {
        let dir = std::env::temp_dir().join(format!("bthost-newpack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("Cargo.toml");
        std::fs::write(
            &f,
            "[workspace]\nresolver = \"2\"\nmembers = [\"host\", \"plugins/hip\"]\ndefault-members = [\"host\"]\n",
        )
        .unwrap();
        add_to_workspace(&f, "plugins/foo").unwrap();
        let t = std::fs::read_to_string(&f).unwrap();
        assert!(
            t.contains("members = [\"host\", \"plugins/hip\", \"plugins/foo\"]"),
            "{t}"
        );
        assert!(
            t.contains("default-members = [\"host\", \"plugins/foo\"]"),
            "{t}"
        );
        std::fs::write(&f, "[workspace]\nmembers = [\n  \"host\",\n]\n").unwrap();
        add_to_workspace(&f, "plugins/foo").unwrap();
        let v: toml::Value = toml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(v["workspace"]["members"].as_array().unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_and_listing() {
        assert_eq!(camel("my_lib"), "MyLib");
        assert!(listed("cudaMalloc", false));
        assert!(!listed("_ZN3foo3barEv", false));
        assert!(!listed("_start", true));
        assert!(listed("main", true));
    }
}
