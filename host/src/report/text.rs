//! The report as text: a screenful that names, first, where each group diverges and who is
//! missing there, with ranks written as sets (`0-16,18-63`) and members in the same state
//! said once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::analyze::{Findings, GroupFinding, How, Missing};
use super::gather::{Gather, ProcKey, State};
use super::ranks::compress;
use super::Context;

fn secs(ns: u64) -> String {
    if ns < 100_000_000 {
        // Work in progress, not a hang: a tenth of a second would say 0.0.
        return fine(ns);
    }
    format!("{:.1} s", ns as f64 / 1e9)
}

/// A short duration, readably (`1.2 ms`).
fn fine(ns: u64) -> String {
    match ns {
        n if n < 1_000 => format!("{n} ns"),
        n if n < 1_000_000 => format!("{:.1} us", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.1} ms", n as f64 / 1e6),
        n => format!("{:.1} s", n as f64 / 1e9),
    }
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

/// An operation's state, in words.
fn state_words(s: &State) -> &'static str {
    match s {
        State::InCall => "still in it",
        State::Pending => "enqueued, not completed",
        State::Done { by, .. } if by.is_empty() => "returned",
        State::Done { .. } => "completed",
        State::DoneByPeers => "completed on its peers",
        State::Failed => "failed",
    }
}

/// The name of a call from its description (`hipMemcpy(dst=...)` -> `hipMemcpy`).
fn call_name(desc: &str) -> &str {
    desc.split('(').next().unwrap_or(desc)
}

/// A range of durations, once when equal to a tenth of a second.
fn secs_range(v: &[u64]) -> String {
    match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) if secs(*a) == secs(*b) => secs(*a),
        (Some(a), Some(b)) => format!("{} to {}", secs(*a), secs(*b)),
        _ => String::new(),
    }
}

fn count_range(v: &[u64]) -> String {
    match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => String::new(),
    }
}

/// How several members wait, said once: what they do (the same for all of them), with the
/// range of their durations and counts.
fn how_text(hows: &[&[How]]) -> String {
    let Some(first) = hows.first() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (i, h) in first.iter().enumerate() {
        let at = |f: &dyn Fn(&How) -> Option<u64>| -> Vec<u64> {
            hows.iter().filter_map(|x| x.get(i).and_then(f)).collect()
        };
        parts.push(match h {
            How::Blocked { desc, .. } => {
                let w = at(&|x| match x {
                    How::Blocked { waited, .. } => *waited,
                    _ => None,
                });
                let mut t = format!("blocked in {}", call_name(desc));
                if !w.is_empty() {
                    let _ = write!(t, " for {}", secs_range(&w));
                }
                t
            }
            How::Polling { desc, threads, .. } => {
                let n = at(&|x| match x {
                    How::Polling { answers, .. } => Some(*answers),
                    _ => None,
                });
                let since = at(&|x| match x {
                    How::Polling { since, .. } => Some(*since),
                    _ => None,
                });
                format!(
                    "polling {}{}: {} not-ready answers in {}",
                    call_name(desc),
                    if *threads > 1 {
                        format!(" on {threads} threads")
                    } else {
                        String::new()
                    },
                    count_range(&n),
                    secs_range(&since)
                )
            }
            How::Exited { status, signal, .. } => {
                let ago = at(&|x| match x {
                    How::Exited { ago, .. } => Some(*ago),
                    _ => None,
                });
                format!(
                    "exited {} before the log ended ({})",
                    secs_range(&ago),
                    if *signal != 0 {
                        format!("killed by signal {signal}")
                    } else {
                        format!("exit status {status}")
                    }
                )
            }
            How::Idle { last } => {
                let since = at(&|x| match x {
                    How::Idle { last } => last.as_ref().map(|l| l.1),
                    _ => None,
                });
                match last {
                    Some((name, _)) => format!(
                        "in no traced call for {} (the last: {name})",
                        secs_range(&since)
                    ),
                    None => "in no traced call".to_string(),
                }
            }
        });
    }
    parts.join("; ")
}

/// What members wait in, without numbers: members alike share a line.
fn how_key(h: &[How]) -> String {
    let k: Vec<String> = h
        .iter()
        .map(|x| match x {
            How::Blocked { desc, .. } => format!("b:{}", call_name(desc)),
            How::Polling { desc, .. } => format!("p:{}", call_name(desc)),
            How::Idle { last } => format!("i:{}", last.is_some()),
            How::Exited { status, signal, .. } => format!("x:{status}:{signal}"),
        })
        .collect();
    k.join(",")
}

/// The hosts of these members whose tracing stopped for a while (a `#G` gap) or early: what
/// they seem not to have done may have been done while nothing was traced.
fn holes_of(cx: &Context, ms: &[&Missing]) -> Option<String> {
    // A member's process key names its log.
    let hosts: BTreeSet<&str> = ms
        .iter()
        .filter_map(|m| cx.logs.get(usize::from(m.proc?.0)))
        .filter(|l| l.has_holes())
        .map(|l| l.host.as_str())
        .collect();
    (!hosts.is_empty()).then(|| crate::hostlist::compress(hosts))
}

/// What a missing member is, as one line (members in the same state share it).
fn missing_state(g: &Gather, m: &Missing) -> String {
    let mut s = String::new();
    match &m.last {
        None if m.proc.is_none() => s.push_str("not in any log"),
        None => s.push_str("no call on it"),
        Some(op) => {
            let from = m
                .proc
                .and_then(|p| g.sites.name(p, op.site))
                .map(|n| format!(" from {n}"))
                .unwrap_or_default();
            let _ = write!(
                s,
                "last #{} {}{from}, {}",
                op.order,
                op.desc,
                state_words(&op.state)
            );
        }
    }
    if m.proc.is_some() {
        if !m.instead.is_empty() {
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
        // Besides its calls in flight (said above with their groups): its polls, and the
        // thread of its group calls when that is in no traced call.
        let rest: Vec<How> = m
            .how
            .iter()
            .filter(|h| !matches!(h, How::Blocked { .. }))
            .cloned()
            .collect();
        if !rest.is_empty() {
            let _ = write!(s, "; {}", how_text(&[rest.as_slice()]));
        }
    }
    s
}

/// Where the members that entered an operation called it from: one line when they agree
/// (`called from train_step (train.c:31)`), else one per call site with its ranks. Members
/// whose call site is not known are left out (a pack without `caller`, no recorded maps).
fn site_lines(g: &Gather, entered: &[super::analyze::Entered]) -> Vec<String> {
    let mut by_site: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for e in entered {
        if let Some(n) = g.sites.name(e.proc, e.site) {
            by_site.entry(n).or_default().push(e.rank);
        }
    }
    if by_site.len() == 1 {
        let (site, _) = by_site.into_iter().next().expect("one");
        return vec![format!("called from {site}")];
    }
    by_site
        .into_iter()
        .map(|(site, ranks)| {
            format!(
                "rank{} {} called it from {site}",
                if ranks.len() == 1 { "" } else { "s" },
                compress(ranks)
            )
        })
        .collect()
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
    for l in &cx.logs {
        for gap in &l.gaps {
            let _ = writeln!(
                out,
                "{}: tracing stopped on {} {gap}; nothing was traced in between",
                l.path.display(),
                l.host
            );
        }
        if let Some(e) = &l.stopped_early {
            let _ = writeln!(
                out,
                "{}: tracing stopped early {e}; the log has what was written before",
                l.path.display()
            );
        } else if l.cut {
            let _ = writeln!(
                out,
                "{}: the log ends without its end mark: its recorder was killed (or still \
                 writes it); what came after its last line is not in it",
                l.path.display()
            );
        }
    }
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
    if g.completion.unobserved_logs > 0 {
        let _ = writeln!(
            out,
            "(no pack of {} observes the completion of enqueued work, as the GPU runtime's does: record it too, e.g. --packs rccl,hip; operations are taken as done when their call returns)",
            if cx.logs.len() == 1 {
                "this log".to_string()
            } else {
                format!("{} of the logs", g.completion.unobserved_logs)
            }
        );
    }
    for gf in &f.groups {
        let _ = writeln!(out, "{}:", group_title(gf));
        if let Some(d) = &gf.divergence {
            let waiting: Vec<&super::analyze::Entered> =
                d.entered.iter().filter(|e| e.waiting).collect();
            // In the call itself (it blocks), or enqueued and not proven done (on a GPU).
            let span = |st: State, word: &str| {
                let w: Vec<u64> = waiting
                    .iter()
                    .filter(|e| e.state == st)
                    .filter_map(|e| e.waited)
                    .collect();
                if w.is_empty() {
                    String::new()
                } else {
                    format!(", {word} {}", secs_range(&w))
                }
            };
            let mut span = format!(
                "{}{}",
                span(State::InCall, "waiting"),
                span(State::Pending, "pending")
            );
            if let (Some(s), false) = (d.slowest_done, span.is_empty()) {
                let _ = write!(span, " (earlier ones completed within {})", fine(s));
            }
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
            for l in site_lines(g, &d.entered) {
                let _ = writeln!(out, "    {l}");
            }
            if !d.mismatch.is_empty() {
                let _ = writeln!(
                    out,
                    "    the members disagree on it: {} mismatch",
                    d.mismatch.join(", ")
                );
            }
            if d.in_progress {
                let _ = writeln!(
                    out,
                    "    in progress, not a hang: {}",
                    match d.slowest_done {
                        Some(s) => format!("its operations took up to {} to complete", fine(s)),
                        None => "it was enqueued just before the log ended".to_string(),
                    }
                );
            } else if d.on_device {
                let _ = writeln!(
                    out,
                    "    every member enqueued it, none completed it, and they agree on it: a hang on the device or the network"
                );
            } else if d.missing.is_empty() {
                let _ = writeln!(out, "    every member is in it");
            }
            // How the waiting members wait, members alike once.
            let mut by_how: BTreeMap<String, Vec<&super::analyze::Entered>> = BTreeMap::new();
            for e in &waiting {
                if !e.how.is_empty() {
                    by_how.entry(how_key(&e.how)).or_default().push(e);
                }
            }
            for es in by_how.values().filter(|_| !d.in_progress) {
                let hows: Vec<&[How]> = es.iter().map(|e| e.how.as_slice()).collect();
                let _ = writeln!(
                    out,
                    "    rank{} {}: {}",
                    if es.len() == 1 { "" } else { "s" },
                    compress(es.iter().map(|e| e.rank)),
                    how_text(&hows)
                );
            }
            // Their stacks at the dump, threads alike once (crate::report::stacks).
            let members: Vec<(u32, ProcKey)> = waiting.iter().map(|e| (e.rank, e.proc)).collect();
            for l in g.stacks.lines(&members, "    ") {
                let _ = writeln!(out, "{l}");
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
                let members: Vec<(u32, ProcKey)> =
                    ms.iter().filter_map(|m| Some((m.rank, m.proc?))).collect();
                for l in g.stacks.lines(&members, "    ") {
                    let _ = writeln!(out, "{l}");
                }
                if let Some(holes) = holes_of(cx, &ms) {
                    let _ = writeln!(
                        out,
                        "    (tracing on {holes} did not run all along: what rank{} {ranks} seem{} \
                         not to have done may have happened while nothing was traced)",
                        if ms.len() == 1 { "" } else { "s" },
                        if ms.len() == 1 { "s" } else { "" },
                    );
                }
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
            let class = if m.classes.is_empty() {
                String::new()
            } else {
                format!(" ({} mismatch)", m.classes.join(", "))
            };
            let _ = writeln!(
                out,
                "  MISMATCH at #{}{class}: {}",
                m.order,
                parts.join("; ")
            );
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
                            Some(w) if op.state == State::Pending => {
                                format!(", enqueued and pending for {}", secs(*w))
                            }
                            Some(w) => format!(", in flight for {}", secs(*w)),
                            None if op.state.waiting() => ", in flight".into(),
                            None => format!(", {}", state_words(&op.state)),
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
    for (i, cycle) in f.device_deadlocks.iter().enumerate() {
        let _ = writeln!(
            out,
            "DEADLOCK ON THE DEVICE {} (operations waiting behind each other on their streams: every member enqueued them, none can complete):",
            i + 1
        );
        for d in cycle {
            let w = &d.step;
            let _ = writeln!(
                out,
                "  {} {:#x} #{} {} waits on rank {}'s device ({}) behind {} {:#x} #{}",
                w.key,
                w.id,
                w.order,
                w.op,
                w.rank,
                proc_name(g, w.proc),
                d.behind.0,
                d.behind.1,
                d.behind.2
            );
        }
    }
    if f.groups.is_empty() {
        let _ = writeln!(
            out,
            "no divergence: in each of {} groups every member is at the same operation, all completed",
            f.quiet
        );
    } else if f.quiet > 0 {
        let _ = writeln!(out, "({} other groups: nothing to report)", f.quiet);
    }
    out
}
