//! The report as text: a screenful that names, first, where each group diverges and who is
//! missing there, with ranks written as sets (`0-16,18-63`) and members in the same state
//! said once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::analyze::{Findings, GroupFinding, Missing};
use super::gather::{Gather, ProcKey};
use super::ranks::compress;
use super::Context;

fn secs(ns: u64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}

/// `host pid N (comm)` of a process.
fn proc_name(g: &Gather, p: ProcKey) -> String {
    match g.procs.get(&p) {
        Some(pr) if !pr.host.is_empty() => format!("{} pid {}", pr.host, p.1),
        _ => format!("pid {}", p.1),
    }
}

/// The hosts of some processes, compactly.
fn hosts(g: &Gather, procs: impl IntoIterator<Item = ProcKey>) -> String {
    let mut hs: Vec<String> = procs
        .into_iter()
        .filter_map(|p| g.procs.get(&p).map(|pr| pr.host.clone()))
        .filter(|h| !h.is_empty())
        .collect();
    hs.sort();
    hs.dedup();
    let list = crate::hostlist::compress(hs.iter().map(String::as_str));
    match hs.len() {
        0 => String::new(),
        1 => format!(" on {list}"),
        // Short enough to read at a glance (`n[1-64,66-128]`), else only how many.
        n if list.len() <= 40 => format!(" on {n} hosts ({list})"),
        n => format!(" on {n} hosts"),
    }
}

fn group_title(f: &GroupFinding) -> String {
    format!(
        "{} {:#x} ({} member{} seen{})",
        f.key,
        f.id,
        f.members.len(),
        if f.members.len() == 1 { "" } else { "s" },
        f.size.map(|n| format!(" of {n}")).unwrap_or_default()
    )
}

/// What a missing member is, as one line (members in the same state share it).
fn missing_state(g: &Gather, m: &Missing) -> String {
    let mut s = String::new();
    match &m.last {
        None if m.proc.is_none() => s.push_str("not in any log"),
        None => s.push_str("no call on it"),
        Some(op) => {
            let _ = write!(
                s,
                "last #{} {}, {}",
                op.order,
                op.desc,
                if op.end.is_some() {
                    "returned"
                } else {
                    "still in it"
                }
            );
        }
    }
    if m.proc.is_some() {
        if m.instead.is_empty() {
            s.push_str("; no call in flight");
        } else {
            let what: Vec<String> = m
                .instead
                .iter()
                .map(|(o, w)| {
                    let mut t = o.desc.clone();
                    if let Some((_, gid, _, order)) = o.group_op {
                        let _ = write!(t, " (#{order} of {gid:#x})");
                    }
                    if let Some(w) = w {
                        let _ = write!(t, " for {}", secs(*w));
                    }
                    t
                })
                .collect();
            let _ = write!(s, "; in flight: {}", what.join(", "));
        }
    }
    let _ = g;
    s
}

pub fn render(cx: &Context, g: &Gather, f: &Findings) -> String {
    let mut out = String::new();
    let hosts_all = crate::hostlist::compress(cx.logs.iter().map(|l| l.host.as_str()));
    let _ = writeln!(
        out,
        "bthost report: {} log{} ({}), {} processes, {} group calls; clocks: {}",
        cx.logs.len(),
        if cx.logs.len() == 1 { "" } else { "s" },
        hosts_all,
        g.procs.len(),
        g.group_calls,
        cx.alignment.how
    );
    if g.groups.is_empty() {
        let _ = writeln!(
            out,
            "no group (communicator) in these logs: the report needs calls of a pack that declares \
             one ([report] in pack.toml: {})",
            if g.specs.is_empty() {
                "no pack of these logs does".to_string()
            } else {
                g.specs
                    .iter()
                    .map(|(p, s)| format!("{p}: {}", s.group))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        return out;
    }
    for gf in &f.groups {
        let _ = writeln!(out, "{}:", group_title(gf));
        if let Some(d) = &gf.divergence {
            let waiting: Vec<&super::analyze::Entered> =
                d.entered.iter().filter(|e| e.waiting).collect();
            let waits: Vec<u64> = waiting.iter().filter_map(|e| e.waited).collect();
            let span = match (waits.iter().min(), waits.iter().max()) {
                (Some(a), Some(b)) if secs(*a) == secs(*b) => format!(", waiting {}", secs(*a)),
                (Some(a), Some(b)) => format!(", waiting {} to {}", secs(*a), secs(*b)),
                _ => String::new(),
            };
            let who = if d.entered.len() == 1 {
                format!("rank {}", compress(d.entered.iter().map(|e| e.rank)))
            } else {
                format!(
                    "ranks {} ({})",
                    compress(d.entered.iter().map(|e| e.rank)),
                    d.entered.len()
                )
            };
            let _ = writeln!(
                out,
                "  #{} {}: entered by {who}{}{span}",
                d.order,
                d.op,
                hosts(g, d.entered.iter().map(|e| e.proc)),
            );
            if d.missing.is_empty() {
                let _ = writeln!(out, "    every member is in it");
            }
            let passed: Vec<u32> = d
                .entered
                .iter()
                .filter(|e| !e.waiting)
                .map(|e| e.rank)
                .collect();
            if !passed.is_empty() {
                let _ = writeln!(out, "    of which past it: {}", compress(passed));
            }
            // Members in the same state once, with their processes if few.
            let mut by_state: BTreeMap<String, Vec<&Missing>> = BTreeMap::new();
            for m in &d.missing {
                by_state.entry(missing_state(g, m)).or_default().push(m);
            }
            for (state, ms) in by_state {
                let ranks = compress(ms.iter().map(|m| m.rank));
                let where_ = if ms.len() <= 2 {
                    let ps: Vec<String> = ms
                        .iter()
                        .filter_map(|m| m.proc.map(|p| proc_name(g, p)))
                        .collect();
                    if ps.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", ps.join(", "))
                    }
                } else {
                    hosts(g, ms.iter().filter_map(|m| m.proc))
                };
                let _ = writeln!(
                    out,
                    "  never entered #{}: rank{} {ranks}{where_}: {state}",
                    d.order,
                    if ms.len() == 1 { "" } else { "s" },
                );
            }
        }
        for m in &gf.mismatches {
            let parts: Vec<String> = m
                .sigs
                .iter()
                .map(|(d, r)| {
                    format!(
                        "rank{} {} {d}",
                        if r.len() == 1 { "" } else { "s" },
                        compress(r.iter().copied())
                    )
                })
                .collect();
            let _ = writeln!(out, "  MISMATCH at #{}: {}", m.order, parts.join("; "));
        }
        if gf.more_mismatches > 0 {
            let _ = writeln!(
                out,
                "  ... and {} more mismatched operations",
                gf.more_mismatches
            );
        }
        for u in &gf.unmatched {
            let what = match u.sends.cmp(&u.recvs) {
                std::cmp::Ordering::Greater => "SEND WITHOUT RECV",
                std::cmp::Ordering::Less => "RECV WITHOUT SEND",
                std::cmp::Ordering::Equal => "POINT TO POINT WAITING",
            };
            let mut line = format!(
                "  {what}: rank {} sent {} to rank {}, which received {} from it",
                u.from, u.sends, u.to, u.recvs
            );
            for (who, last) in [("send", &u.last_send), ("receive", &u.last_recv)] {
                if let Some((op, w)) = last {
                    let _ = write!(
                        line,
                        "; last {who} {}{}",
                        op.desc,
                        match w {
                            Some(w) => format!(", in flight for {}", secs(*w)),
                            None if op.end.is_none() => ", in flight".into(),
                            None => ", returned".into(),
                        }
                    );
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
    for (i, cycle) in f.deadlocks.iter().enumerate() {
        let _ = writeln!(out, "DEADLOCK {} (a cycle of waits across groups):", i + 1);
        for (k, w) in cycle.iter().enumerate() {
            let next = &cycle[(k + 1) % cycle.len()];
            let _ = writeln!(
                out,
                "  {} (rank {} of {} {:#x}) waits in #{} {} for {}",
                proc_name(g, w.proc),
                w.rank,
                w.key,
                w.id,
                w.order,
                w.op,
                proc_name(g, next.proc)
            );
        }
    }
    if f.groups.is_empty() {
        let _ = writeln!(
            out,
            "no divergence: in each of {} groups every member is at the same operation, none in flight",
            f.quiet
        );
    } else if f.quiet > 0 {
        let _ = writeln!(out, "({} other groups: nothing to report)", f.quiet);
    }
    out
}
