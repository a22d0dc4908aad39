//! The progress summary of the flight recorder's scripts, for `record --on-hang`
//! (crate::record::hang): whether a group operation (a collective, a send or receive) has been
//! proven done since it was enqueued, per process, in four small maps.
//!
//! On a GPU a collective only enqueues its work and returns; a hang shows as a thread blocked
//! in a sync and a watchdog polling an event that answers "not ready", so records keep
//! completing while nothing progresses. The packs' `[completion]` rules (crate::pack::completion)
//! say which calls are what, as data:
//! - a *group operation* is a call of an `enqueue` rule in a pack with a `[report]` section
//!   (rccl, nccl): at its exit, if it returned one of its pack's `done` values,
//!   `@gq[pid] = (time, record id)` (the process's last one; its record id names it);
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
use crate::pack::completion::Does;
use crate::pack::{Pack, Probe};

/// A process's last group operation: `(time, record id)`.
pub const ENQUEUED: &str = "@gq";
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
            pid: d.pid,
        })
    }

    /// Statements for BEGIN: each map's key and value types (bpftrace 0.23 wants them known
    /// before a probe reads a map it has not written). The entries of pid 0 stay: never pending.
    pub fn begin(&self) -> Vec<String> {
        let mut out = vec![
            format!("{ENQUEUED}[(uint64)0] = ((uint64)0, (uint64)0);"),
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
        let pid = format!("(uint64)({})", self.pid);
        let body = match &w.role {
            Role::Group => format!("{ENQUEUED}[{pid}] = ($now, (uint64){id});"),
            Role::Mark { marker } => {
                let Some(m) = field(marker) else {
                    return Vec::new();
                };
                format!("{MARKS}[{pid}, (uint64)({m})] = $s;")
            }
            Role::Observe { marker } => {
                let proof = match marker.as_deref().filter(|_| self.marks).and_then(field) {
                    Some(m) => format!("{MARKS}[$gp, (uint64)({m})]"),
                    None => "$s".to_string(),
                };
                let mut s = format!("$gp = {pid}; $gs = {proof}; $gd = {PROVEN}[$gp]; ");
                let _ = write!(
                    s,
                    "if ($gs > $gd) {{ $gq = {ENQUEUED}[$gp]; if ($gq.0 > $gd) {{ {PROGRESS} = $now; }} {PROVEN}[$gp] = $gs; }}"
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
        [ENQUEUED, PROVEN, PROGRESS]
            .iter()
            .map(|m| format!("print({m});"))
            .collect()
    }

    /// Statements at a process's exit (`$p`, its pid): its entries go (overwritten with zeros
    /// before bpftrace 0.19, whose print dies of a key deleted meanwhile). Its markers stay.
    pub fn process_exit(&self) -> Vec<String> {
        let (q, d) = if self.overwrite {
            (
                format!("{ENQUEUED}[(uint64)$p] = ((uint64)0, (uint64)0);"),
                format!("{PROVEN}[(uint64)$p] = (uint64)0;"),
            )
        } else {
            (
                format!("delete({ENQUEUED}[(uint64)$p]);"),
                format!("delete({PROVEN}[(uint64)$p]);"),
            )
        };
        vec![
            format!("$gq = {ENQUEUED}[(uint64)$p]; if ($gq.0 != 0) {{ {q} }}"),
            format!("if ({PROVEN}[(uint64)$p] != 0) {{ {d} }}"),
        ]
    }

    /// The maps (cleared at END).
    pub fn maps(&self) -> Vec<String> {
        let mut m = vec![
            ENQUEUED.to_string(),
            PROVEN.to_string(),
            PROGRESS.to_string(),
        ];
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
