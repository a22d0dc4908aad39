//! The progress summary of the flight recorder's scripts, for `record --on-hang`
//! (crate::record::hang): whether a group operation (a collective, a send or receive) has been
//! proven done since it was enqueued, per process, in five small maps.
//!
//! On a GPU a collective only enqueues its work and returns; a hang shows as a thread blocked
//! in a sync and a watchdog polling an event that answers "not ready", so records keep
//! completing while nothing progresses. The packs' `[completion]` rules (crate::pack::completion)
//! say which calls are what, as data:
//! - a *group operation* is a call of an `enqueue` rule in a pack with a `[report]` section
//!   (rccl, nccl): at its exit, if it returned one of its pack's `done` values,
//!   `@gq[pid] = time` and `@gf[pid] = record id` (the process's last one, and what it was);
//! - a *mark* is a call of a `record` rule (hipEventRecord): at its exit, if done,
//!   `@gm[pid, marker] = <its entry time>`, the point on its queue the marker stands for;
//! - an *observation* is a call of a `wait` or `query` rule (syncs, queries): at its exit, if
//!   it returned a `done` value, it proves done the work enqueued before its *proof time*: the
//!   marker's time for a rule with a `marker` (an event: what was enqueued before the event
//!   was recorded, not before it was queried: a watchdog that finds an old event complete
//!   proves nothing of a collective enqueued after it), else the call's own entry time. When
//!   that time passes the process's `@gd[pid]` (what was proven so far) while a group
//!   operation was pending (`@gq > @gd`), `@gprog = now`: a group operation completed.
//!
//! Queues are not told apart (one summary per process: an observation of any queue of the
//! process counts), and a call whose entry was not seen (tracing began inside it) proves
//! nothing (its entry time reads 0). record's status span prints the maps; each process's
//! entries are cleared at its exit. Every name written here is a constant; the values come from
//! checked pack data (record ids, `done` numbers, field types); the marker is an argument the
//! probe already reads, as the script's own expression for it.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::bpftrace::Dialect;
use crate::compose::emit::to_u64;
use crate::pack::completion::Does;
use crate::pack::{Pack, Probe};

/// When a process last enqueued a group operation,
pub const ENQUEUED: &str = "@gq";
/// and its record id (its function). Not one tuple with the time: bpftrace 0.17 warns
/// ("Addrspace is not set") of a tuple written in BEGIN, where the maps are typed.
pub const ENQUEUED_CALL: &str = "@gf";
/// The time up to which a process's work is proven done.
pub const PROVEN: &str = "@gd";
/// When a group operation was last proven done (any process).
pub const PROGRESS: &str = "@gprog";
/// When each marker (event) of a process was last recorded.
const MARKS: &str = "@gm";

/// What a probe's call is to the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    Group,
    /// A wait or query; its marker field, if its rule names one the probe reads at entry.
    Observe {
        marker: Option<String>,
    },
    Mark {
        marker: String,
    },
}

#[derive(Clone, Debug)]
struct Watched {
    role: Role,
    /// The return values that mean done (the pack's), masked to the return type's width;
    /// empty: the call returns nothing (counted as done).
    done: Vec<u64>,
    mask: u64,
}

/// The summary's plan for one script.
pub(super) struct Progress {
    /// By (pack, function).
    watched: HashMap<(String, String), Watched>,
    /// Observations with a marker read its time (else their own entry time).
    marks: bool,
    /// Close a process's entries by overwriting them (bpftrace before 0.19: crate::compose::emit::stored).
    overwrite: bool,
    spell: crate::bpftrace::dialect::Spelling,
    pid: &'static str,
}

/// The probe's argument named `field`, if it is read at entry in one slot (a handle).
fn entry_field(probe: &Probe, field: &str) -> Option<String> {
    probe
        .args
        .iter()
        .find(|a| a.name == field && !a.at_exit() && a.ty.slots() == 1)
        .map(|a| a.name.clone())
}

fn role_of(pack: &Pack, probe: &Probe) -> Option<Role> {
    let c = pack.completion.as_ref()?;
    let f = &probe.function;
    for r in c.rules.iter().filter(|r| r.calls.iter().any(|x| x == f)) {
        let marker = || r.marker.as_deref().and_then(|m| entry_field(probe, m));
        match r.does {
            Does::Enqueue if pack.report.is_some() => return Some(Role::Group),
            Does::Wait | Does::Query => return Some(Role::Observe { marker: marker() }),
            Does::Record => {
                if let Some(marker) = marker() {
                    return Some(Role::Mark { marker });
                }
            }
            _ => {}
        }
    }
    None
}

impl Progress {
    /// The plan for these probes; None when the script has no group operation or nothing that
    /// observes completion (then the summary could only say "pending" forever).
    pub fn plan<'a>(
        probes: impl Iterator<Item = (&'a Pack, &'a Probe)>,
        d: &Dialect,
    ) -> Option<Progress> {
        let mut watched = HashMap::new();
        for (pack, probe) in probes {
            let Some(role) = role_of(pack, probe) else {
                continue;
            };
            let Some(c) = pack.completion.as_ref() else {
                continue;
            };
            let (done, mask) = match &probe.ret {
                None => (Vec::new(), u64::MAX),
                Some(r) => {
                    let mask = match r.ty.bits() {
                        64 => u64::MAX,
                        b => (1u64 << b) - 1,
                    };
                    (c.done.iter().map(|&v| v as u64 & mask).collect(), mask)
                }
            };
            watched.insert(
                (pack.name.clone(), probe.function.clone()),
                Watched { role, done, mask },
            );
        }
        let has = |f: fn(&Role) -> bool| watched.values().any(|w| f(&w.role));
        if !has(|r| *r == Role::Group) || !has(|r| matches!(r, Role::Observe { .. })) {
            return None;
        }
        let marks = has(|r| matches!(r, Role::Mark { .. }));
        Some(Progress {
            watched,
            marks,
            overwrite: !d.print_survives_deletes,
            spell: d.spell,
            pid: d.pid,
        })
    }

    /// Statements for BEGIN: each map's key and value types (bpftrace 0.23 wants them known
    /// before a probe reads a map it has not written). The entries of pid 0 stay: never pending.
    pub fn begin(&self) -> Vec<String> {
        let mut out = vec![
            format!("{ENQUEUED}[(uint64)0] = (uint64)0;"),
            format!("{ENQUEUED_CALL}[(uint64)0] = (uint64)0;"),
            format!("{PROVEN}[(uint64)0] = (uint64)0;"),
            format!("{PROGRESS} = (uint64)0;"),
        ];
        if self.marks {
            out.push(format!("{MARKS}[(uint64)0, (uint64)0] = (uint64)0;"));
        }
        out
    }

    /// Statements at the exit of `pack`'s probe of `function` (after its record is written:
    /// `$now` is the exit time, `$s` the entry time, 0 if unseen), given the expression of each
    /// of its entry arguments there; `id` is its record's id.
    pub fn at_exit(
        &self,
        pack: &str,
        function: &str,
        id: u32,
        field: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        let Some(w) = self.watched.get(&(pack.to_string(), function.to_string())) else {
            return Vec::new();
        };
        let pid = to_u64(self.pid);
        let body = match &w.role {
            Role::Group => {
                format!("$gp = {pid}; {ENQUEUED}[$gp] = $now; {ENQUEUED_CALL}[$gp] = (uint64){id};")
            }
            Role::Mark { marker } => {
                let Some(m) = field(marker) else {
                    return Vec::new();
                };
                format!("{MARKS}[{pid}, {}] = $s;", to_u64(&m))
            }
            Role::Observe { marker } => {
                let proof = match marker.as_deref().filter(|_| self.marks).and_then(field) {
                    Some(m) => format!("{MARKS}[$gp, {}]", to_u64(&m)),
                    None => "$s".to_string(),
                };
                let mut s = format!("$gp = {pid}; $gs = {proof}; $gd = {PROVEN}[$gp]; ");
                let _ = write!(
                    s,
                    "if ($gs > $gd) {{ if ({ENQUEUED}[$gp] > $gd) {{ {PROGRESS} = $now; }} {PROVEN}[$gp] = $gs; }}"
                );
                s
            }
        };
        vec![format!("{}{body}{}", self.done_test(w), close(w))]
    }

    /// `if (<retval is done>) { ` (or nothing for a call without a result).
    fn done_test(&self, w: &Watched) -> String {
        if w.done.is_empty() {
            return String::new();
        }
        let ret = if w.mask == u64::MAX {
            "retval".to_string()
        } else {
            format!("(retval & 0x{:x})", w.mask)
        };
        let tests: Vec<String> = w.done.iter().map(|v| format!("{ret} == {v}")).collect();
        format!("if ({}) {{ ", tests.join(" || "))
    }

    /// Statements of the status span: the maps, as record's hang watch reads them.
    pub fn status(&self) -> Vec<String> {
        [ENQUEUED, ENQUEUED_CALL, PROVEN, PROGRESS]
            .iter()
            .map(|m| format!("print({m});"))
            .collect()
    }

    /// Statements at a process's exit (`$p`, its pid): its entries go (overwritten with zeros
    /// before bpftrace 0.19, whose print dies of a key deleted meanwhile). Its markers stay.
    pub fn process_exit(&self) -> Vec<String> {
        let close = |m: &str| {
            if self.overwrite {
                format!("{m}[$p] = (uint64)0;")
            } else {
                self.spell.delete(&format!("{m}[$p]"))
            }
        };
        vec![
            format!(
                "if ({ENQUEUED}[$p] != 0) {{ {} {} }}",
                close(ENQUEUED),
                close(ENQUEUED_CALL)
            ),
            format!("if ({PROVEN}[$p] != 0) {{ {} }}", close(PROVEN)),
        ]
    }

    /// The maps (cleared at END).
    pub fn maps(&self) -> Vec<String> {
        let mut m: Vec<String> = [ENQUEUED, ENQUEUED_CALL, PROVEN, PROGRESS]
            .iter()
            .map(|m| m.to_string())
            .collect();
        if self.marks {
            m.push(MARKS.to_string());
        }
        m
    }
}

fn close(w: &Watched) -> &'static str {
    if w.done.is_empty() {
        ""
    } else {
        " }"
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use semver::Version;

    use crate::compose::emit::Emit;
    use crate::compose::hooks::Hooks;
    use crate::compose::{compose, Options, PackInput};
    use crate::library::symbols::Functions;
    use crate::pack::Pack;

    fn packs(names: &[&str]) -> Vec<Pack> {
        crate::registry::builtin::packs()
            .into_iter()
            .map(|p| p.unwrap())
            .filter(|p| names.contains(&p.name.as_str()))
            .collect()
    }

    fn script(names: &[&str], emit: Emit, hooks: bool, v: &str) -> String {
        let packs = packs(names);
        let inputs: Vec<PackInput> = packs
            .iter()
            .map(|p| PackInput {
                pack: p,
                library: PathBuf::from(format!("/lib/{}.so", p.name)),
                functions: Functions::from_names(p.probes.iter().map(|x| x.function.clone())),
                nested: p
                    .nested
                    .iter()
                    .map(|_| (PathBuf::from("/lib/x.so"), true))
                    .collect(),
                lib_version: None,
                also: Vec::new(),
            })
            .collect();
        let opts = Options {
            emit,
            hooks: hooks.then(|| Hooks {
                exe: "/usr/bin/bthost".into(),
                token: 7,
                filter: false,
                pids: Vec::new(),
                libc: None,
            }),
            ..Default::default()
        };
        compose(&inputs, &Version::parse(v).unwrap(), &opts)
            .unwrap()
            .script
    }

    /// The lines of the probe block that starts with `head`.
    fn block<'s>(s: &'s str, head: &str) -> &'s str {
        let at = s
            .find(&format!("\n{head}\n"))
            .unwrap_or_else(|| panic!("{head}"));
        let rest = &s[at + 1..];
        &rest[..rest.find("\n}\n").unwrap()]
    }

    #[test]
    fn the_flight_recorder_keeps_the_summary_for_record() {
        let ring = Emit::Ring { per_thread: 64 };
        for v in ["0.17.0", "0.23.2"] {
            let s = script(&["hip", "rccl"], ring.clone(), true, v);
            // Cast where it is not a uint64 already (crate::compose::emit::widen).
            let pid = if v == "0.23.2" {
                "(uint64)(curtask->tgid)"
            } else {
                "pid"
            };
            // A collective that returned ncclSuccess: the process's last enqueue, by record id.
            let ar = block(&s, "uretprobe:/lib/rccl.so:ncclAllReduce");
            assert!(
                ar.contains(&format!(
                    "if ((retval & 0xffffffff) == 0) {{ $gp = {pid}; @gq[$gp] = $now; @gf[$gp] = (uint64)"
                )),
                "{ar}"
            );
            // An event recorded: its time; a query of it proves what came before that time.
            let rec = block(&s, "uretprobe:/lib/hip.so:hipEventRecord");
            assert!(rec.contains(&format!("@gm[{pid}, $e.1] = $s;")), "{rec}");
            let q = block(&s, "uretprobe:/lib/hip.so:hipEventQuery");
            assert!(q.contains("$gs = @gm[$gp, $e.1];"), "{q}");
            assert!(
                q.contains("if (@gq[$gp] > $gd) { @gprog = $now; } @gd[$gp] = $gs;"),
                "{q}"
            );
            // A sync proves what came before its entry.
            let sync = block(&s, "uretprobe:/lib/hip.so:hipStreamSynchronize");
            assert!(sync.contains("$gs = $s;"), "{sync}");
            // Not a collective, not an observation: nothing.
            let launch = block(&s, "uretprobe:/lib/hip.so:hipLaunchKernel");
            assert!(!launch.contains("@g"), "{launch}");
            // Typed in BEGIN, printed by the status span, cleared at a process's exit and END.
            let begin = block(&s, "BEGIN");
            assert!(
                begin.contains("@gq[(uint64)0] = (uint64)0;\n\t@gf[(uint64)0] = (uint64)0;"),
                "{begin}"
            );
            let status = block(
                &s,
                "uprobe:/usr/bin/bthost:bthost_status_request\n/arg0 == 7/",
            );
            assert!(
                status.contains("print(@gq);\n\tprint(@gf);\n\tprint(@gd);\n\tprint(@gprog);"),
                "{status}"
            );
            let exit = block(&s, "tracepoint:sched:sched_process_exit");
            let close = if v == "0.17.0" {
                "if (@gq[$p] != 0) { @gq[$p] = (uint64)0; @gf[$p] = (uint64)0; }"
            } else {
                "if (@gq[$p] != 0) { delete(@gq[$p]); delete(@gf[$p]); }"
            };
            assert!(exit.contains(close), "{exit}");
            assert!(block(&s, "END").contains("clear(@gm);"));
        }
    }

    #[test]
    fn other_scripts_keep_none() {
        for (names, emit, hooks) in [
            (&["hip", "rccl"][..], Emit::Printf, true),
            (&["hip", "rccl"], Emit::Drained { period_ms: 50 }, true),
            // A flight recorder run by hand: nothing reads the summary.
            (&["hip", "rccl"], Emit::Ring { per_thread: 64 }, false),
            // No group operation, or nothing observing completion: it would say nothing.
            (&["hip"], Emit::Ring { per_thread: 64 }, true),
            (&["rccl"], Emit::Ring { per_thread: 64 }, true),
        ] {
            let s = script(names, emit.clone(), hooks, "0.17.0");
            assert!(!s.contains("@g"), "{names:?} {emit:?} {hooks}");
        }
    }
}
