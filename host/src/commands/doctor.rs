//! `bthost doctor`: can this machine trace? Each check says what it found and how to fix it.

use std::fmt::Write as _;
use std::path::Path;

use crate::bpftrace;
use crate::compose;
use crate::library::{self, job, LibOverrides, Search};
use crate::registry::{trust, Registry};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

pub struct Check {
    pub status: Status,
    pub what: String,
}

pub fn run(
    reg: &Registry,
    packs: &[String],
    libs: &LibOverrides,
    bpftrace_bin: &Path,
) -> Vec<Check> {
    let mut v = Vec::new();
    let mut push = |status, what: String| v.push(Check { status, what });

    let detected = bpftrace::detect(bpftrace_bin);
    match &detected {
        Ok(ver) => {
            let mut ok_for_all = true;
            for name in packs {
                if let Some(e) = reg.entries.get(name) {
                    if !e.pack.supports_bpftrace(ver) {
                        ok_for_all = false;
                        push(
                            Status::Fail,
                            format!(
                                "pack {name} has no variant for bpftrace {ver}; it supports {}",
                                e.pack.supported_ranges()
                            ),
                        );
                    }
                }
            }
            if ok_for_all {
                push(
                    Status::Ok,
                    format!("bpftrace {ver} ({})", bpftrace_bin.display()),
                );
            }
        }
        Err(e) => push(
            Status::Fail,
            format!("bpftrace: {e}; install it (apt-get install bpftrace)"),
        ),
    }

    if trust::running_as_root() {
        push(
            Status::Ok,
            "running as root (BPF and uprobes allowed)".into(),
        );
    } else {
        push(Status::Fail, "not root: bpftrace needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN) to attach uprobes; use sudo".into());
    }

    let tracefs = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("tracefs"))
        })
        .unwrap_or(false);
    if tracefs {
        push(Status::Ok, "tracefs mounted".into());
    } else {
        push(
            Status::Warn,
            "tracefs not mounted: bpftrace 0.17 and 0.23 print \"failed to detach probe ... uprobe_events\" at exit \
             (harmless); mount it with: mount -t tracefs nodev /sys/kernel/tracing"
                .into(),
        );
    }

    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        push(
            Status::Ok,
            "kernel BTF present (/sys/kernel/btf/vmlinux)".into(),
        );
    } else {
        push(
            Status::Warn,
            "no kernel BTF (/sys/kernel/btf/vmlinux): bpftrace 0.23.0-0.24.1 variants read thread ids from curtask and need it"
                .into(),
        );
    }

    let search = Search::standard();
    for name in packs {
        let Some(e) = reg.entries.get(name) else {
            push(Status::Fail, format!("pack {name}: not found"));
            continue;
        };
        // As build and a record whose job is not known choose (`record -- CMD` and `--pid`
        // probe the copy the job loads).
        let choice = match job::choose(&e.pack, libs, &search, &job::JobLoads::default()) {
            Ok(c) => c,
            Err(err) => {
                push(Status::Fail, err);
                continue;
            }
        };
        let mut preferred: Option<Option<semver::Version>> = None;
        let several = choice.probed.len() > 1;
        for (i, f) in choice.probed.iter().enumerate() {
            let funcs = match library::symbols::functions(&f.path) {
                Ok(funcs) => funcs,
                Err(err) => {
                    push(Status::Fail, format!("pack {name}: {err}"));
                    continue;
                }
            };
            let lib_version = library::version::read(&f.path, &e.pack.library.version_from);
            // The version said for every copy; the pack's own sources pick the variant.
            let shown = lib_version
                .clone()
                .or_else(|| library::version::read(&f.path, &[library::version::Source::File]));
            if i == 0 {
                if let Ok(ver) = &detected {
                    match compose::choose_variant(&e.pack, ver, &f.path, lib_version.as_ref()) {
                        Ok((_, chosen)) => push(Status::Ok, format!("pack {name}: {}", chosen.why)),
                        Err(err) => push(Status::Fail, format!("{err}")),
                    }
                }
                preferred = Some(lib_version.as_ref().map(|l| l.version.clone()));
            }
            let lv = preferred.as_ref().and_then(|v| v.as_ref());
            let probes = e.pack.probes_for(lv);
            let missing: Vec<_> = probes
                .iter()
                .filter(|p| !funcs.probeable(&p.function))
                .map(|p| p.function.as_str())
                .collect();
            let kept = probes.len() - missing.len();
            let mut what = format!(
                "pack {name}: {} ({}), {}, probed{}: {kept} of {} probes present",
                f.path.display(),
                f.how,
                match &shown {
                    Some(v) => format!("version {} ({})", v.version, v.how),
                    None => "version unknown".to_string(),
                },
                match (several, i) {
                    (false, _) => String::new(),
                    (true, 0) => format!(
                        " (copy 1 of {}, preferred: its version picks the variant)",
                        choice.probed.len()
                    ),
                    (true, _) => format!(" (copy {} of {})", i + 1, choice.probed.len()),
                },
                probes.len()
            );
            if !missing.is_empty() {
                let _ = write!(
                    what,
                    "; not in the library (left out by build): {}",
                    missing.join(", ")
                );
            }
            push(
                if missing.is_empty() {
                    Status::Ok
                } else {
                    Status::Warn
                },
                what,
            );
            for n in &e.pack.nested {
                push_nested(&mut push, name, n, &f.path, libs, &search);
            }
        }
        if several {
            push(
                Status::Ok,
                format!(
                    "pack {name}: {} copies found: build and record without a job probe each of them; `record -- CMD` and `record --pid PID` probe the one the job loads",
                    choice.probed.len()
                ),
            );
        }
        for (f, why) in &choice.skipped {
            push(
                Status::Warn,
                format!(
                    "pack {name}: {} ({}) is not probed: {why}; --lib {name}={} probes it anyway",
                    f.path.display(),
                    f.how,
                    f.path.display()
                ),
            );
        }
    }
    v
}

/// A `[[nested]]` probe: which file the pack's library reaches for it, and whether the
/// function is there to probe.
fn push_nested(
    push: &mut impl FnMut(Status, String),
    pack: &str,
    n: &crate::pack::Nested,
    caller: &Path,
    libs: &LibOverrides,
    search: &Search,
) {
    let what = format!("pack {pack}: nested {} in {}", n.function, n.library);
    match library::find_nested(&n.library, caller, libs, search) {
        Ok(f) => match library::symbols::functions(&f.path) {
            Ok(funcs) => match funcs.why_not(&n.function) {
                None => push(
                    Status::Ok,
                    format!("{what}: {} ({})", f.path.display(), f.how),
                ),
                Some(why) => push(
                    Status::Warn,
                    format!(
                        "{what}: {} ({}) {why}; the capture {} stays unknown",
                        f.path.display(),
                        f.how,
                        n.capture
                    ),
                ),
            },
            Err(err) => push(Status::Fail, format!("{what}: {err}")),
        },
        Err(err) => push(
            Status::Warn,
            format!("{what}: {err}; the capture {} stays unknown", n.capture),
        ),
    }
}

pub fn format(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(s, "[{tag}] {}", c.what);
    }
    s
}
