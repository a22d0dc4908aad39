//! `bthost packs`: every pack found, its version, probes, bpftrace ranges, plugin and library.

use std::fmt::Write as _;

use crate::library::{self, LibOverrides, Search};
use crate::registry::Registry;

pub fn report(reg: &Registry, libs: &LibOverrides, verbose: bool) -> String {
    let search = Search::standard();
    let mut s = String::new();
    for (name, e) in &reg.entries {
        let p = &e.pack;
        let _ = writeln!(s, "{name} {}  {}", p.version, p.description);
        let from = if crate::registry::builtin::is_builtin(&p.dir) {
            "built into bthost".to_string()
        } else if e.overrides_builtin {
            format!("{} (overrides the built-in pack)", p.dir.display())
        } else {
            p.dir.display().to_string()
        };
        let _ = writeln!(s, "  from:     {from}");
        let ranges: Vec<_> = p.variants.iter().map(|v| v.range_text.as_str()).collect();
        let _ = writeln!(s, "  bpftrace: {}", ranges.join(" | "));
        match &e.plugin {
            Some(pl) => {
                let _ = writeln!(
                    s,
                    "  plugin:   {} (ABI {}){}",
                    if pl.path.as_os_str() == "<built-in>" {
                        "built into bthost".to_string()
                    } else {
                        pl.path.display().to_string()
                    },
                    pl.info.abi_version,
                    if e.plugin_overrides_builtin {
                        " (overrides the built-in plugin)"
                    } else {
                        ""
                    }
                );
            }
            None => {
                let _ = writeln!(s, "  plugin:   none (generic decoding from pack.toml)");
            }
        }
        if !p.links.is_empty() {
            let _ = writeln!(s, "  links:    {}", p.links.join(", "));
        }
        let found = library::find_all(p, libs, &search).map(|c| {
            // Every copy found (build and a record without a job probe each), then those skipped.
            for (i, f) in c.found.iter().enumerate() {
                let tag = if i == 0 { "  library: " } else { "           " };
                let _ = writeln!(s, "{tag} {} ({})", f.path.display(), f.how);
            }
            for (f, why) in &c.skipped {
                let _ = writeln!(
                    s,
                    "            not probed: {} ({}): {why}",
                    f.path.display(),
                    f.how
                );
            }
            c.found
                .into_iter()
                .next()
                .expect("find_all finds one or fails")
        });
        let missing = match &found {
            Ok(f) => match library::symbols::functions(&f.path) {
                Ok(funcs) => p
                    .probes
                    .iter()
                    .filter(|pr| !funcs.probeable(&pr.function))
                    .map(|pr| pr.function.clone())
                    .collect(),
                Err(e) => {
                    let _ = writeln!(s, "            unreadable: {e}");
                    Vec::new()
                }
            },
            Err(e) => {
                let _ = writeln!(s, "  library:  NOT FOUND: {e}");
                Vec::new()
            }
        };
        let _ = writeln!(s, "  probes:   {}", p.probes.len());
        if verbose {
            for pr in &p.probes {
                let _ = writeln!(s, "    {} ({})", pr.function, pr.mode.name());
            }
        }
        if !missing.is_empty() {
            let _ = writeln!(
                s,
                "  not in the library (left out by build): {}",
                missing.join(", ")
            );
        }
    }
    if reg.entries.is_empty() {
        s.push_str("no packs found\n");
    }
    s.push_str(&skipped_report(reg, verbose));
    s
}

/// What discovery skipped, and why; abi_stable's long reports only with `verbose`.
pub fn skipped_report(reg: &Registry, verbose: bool) -> String {
    let mut s = String::new();
    for sk in &reg.skipped {
        let _ = writeln!(s, "skipped {}: {}", sk.path.display(), sk.why);
        if verbose {
            if let Some(d) = &sk.detail {
                for l in d.lines() {
                    let _ = writeln!(s, "    {l}");
                }
            }
        }
    }
    s
}
