//! The per-thread text log: processes, then threads, then calls in start order, indented by
//! nesting, with time, duration, decoded arguments, return names and link keys. Useful to read
//! a hang directly and to check the Perfetto files by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use bthost_plugin_api::{Arg, Event, EventKind, Link, Value};

use crate::decode::{LogDecoder, Stats};
use crate::log::Diagnostics;

/// One call (or instant) on a thread.
#[derive(Debug, Clone)]
pub struct Item {
    /// Start time; `None` when the entry predates the log.
    pub start: Option<u64>,
    /// End time; `None` when the call had not returned when the log ended.
    pub end: Option<u64>,
    pub name: &'static str,
    pub args: Vec<Arg>,
    pub results: Vec<Arg>,
    pub links: Vec<Link>,
    pub instant: bool,
}

#[derive(Default)]
struct Thread {
    comm: String,
    items: Vec<Item>,
    /// Indices into `items` of calls begun and not yet ended.
    open: Vec<usize>,
}

/// Collects events per thread, then writes them.
#[derive(Default)]
pub struct TextLog {
    /// (pid, tid) -> thread
    threads: BTreeMap<(u32, u32), Thread>,
    first_ts: Option<u64>,
    /// The packs whose events were seen.
    packs: std::collections::BTreeSet<&'static str>,
}

impl TextLog {
    pub fn push(&mut self, e: Event, dec: &LogDecoder) {
        self.packs.insert(e.pack.as_str());
        let key = (e.pid, e.tid);
        let th = self.threads.entry(key).or_default();
        if th.comm.is_empty() {
            if let Some((_, comm)) = dec.thread(e.tid) {
                th.comm = comm.clone();
            }
        }
        let ts = e.ts;
        self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
        let name: &'static str = e.name.as_str();
        match e.kind {
            EventKind::Complete | EventKind::Instant => {
                // A whole call carries its return value among its fields.
                let (results, args): (Vec<Arg>, Vec<Arg>) =
                    e.args.into_iter().partition(|a| a.name.as_str() == "ret");
                th.items.push(Item {
                    start: Some(ts),
                    end: Some(ts + e.dur),
                    name,
                    args,
                    results,
                    links: e.links.into_iter().collect(),
                    instant: e.kind == EventKind::Instant,
                })
            }
            EventKind::Begin => {
                th.open.push(th.items.len());
                th.items.push(Item {
                    start: Some(ts),
                    end: None,
                    name,
                    args: e.args.into_iter().collect(),
                    results: Vec::new(),
                    links: e.links.into_iter().collect(),
                    instant: false,
                });
            }
            EventKind::End => {
                let pos = th.open.iter().rposition(|&i| th.items[i].name == name);
                match pos {
                    Some(p) => {
                        // Calls opened after it and never closed lost their exits.
                        let idx = th.open[p];
                        th.open.truncate(p);
                        let it = &mut th.items[idx];
                        it.end = Some(ts);
                        it.results.extend(e.args);
                        for l in e.links {
                            if !it.links.contains(&l) {
                                it.links.push(l);
                            }
                        }
                    }
                    None => th.items.push(Item {
                        start: None,
                        end: Some(ts),
                        name,
                        args: Vec::new(),
                        results: e.args.into_iter().collect(),
                        links: e.links.into_iter().collect(),
                        instant: false,
                    }),
                }
            }
        }
    }

    /// The packs whose events the log held.
    pub fn packs(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.packs.iter().copied()
    }

    /// The calls of each thread, sorted by start, for tests and other writers.
    pub fn threads(&self) -> impl Iterator<Item = ((u32, u32), &str, Vec<&Item>)> {
        self.threads
            .iter()
            .map(|(k, t)| (*k, t.comm.as_str(), sorted(&t.items)))
    }

    pub fn write(
        &self,
        w: &mut impl Write,
        log: &Path,
        schema_hash: u64,
        stats: &Stats,
        diag: &Diagnostics,
    ) -> io::Result<()> {
        let t0 = self.first_ts.unwrap_or(0);
        writeln!(
            w,
            "# bthost text log of {} (schema {schema_hash:016x})",
            log.display()
        )?;
        writeln!(
            w,
            "# {} records, {} threads; times in seconds since the first record (t0 = {}.{:09} s, CLOCK_MONOTONIC)",
            stats.records,
            self.threads.len(),
            t0 / 1_000_000_000,
            t0 % 1_000_000_000
        )?;
        if stats.lost_events > 0 {
            writeln!(
                w,
                "# WARNING: bpftrace lost {} events; some calls may be unmatched",
                stats.lost_events
            )?;
        }
        if !diag.is_empty() {
            for l in diag.to_string().lines() {
                writeln!(w, "# {l}")?;
            }
        }
        let mut last_pid = None;
        for ((pid, tid), comm, items) in self.threads() {
            if last_pid != Some(pid) {
                writeln!(w, "\n== process {pid} ==")?;
                last_pid = Some(pid);
            }
            writeln!(w, "-- thread {tid} ({comm}) --")?;
            let mut stack: Vec<u64> = Vec::new();
            for it in items {
                let start = it.start.unwrap_or(t0);
                while stack
                    .last()
                    .is_some_and(|&end| end <= start && it.start.is_some())
                {
                    stack.pop();
                }
                let depth = stack.len();
                writeln!(w, "{}", line(it, t0, depth))?;
                if !it.instant {
                    stack.push(it.end.unwrap_or(u64::MAX));
                }
            }
        }
        Ok(())
    }
}

fn sorted(items: &[Item]) -> Vec<&Item> {
    let mut v: Vec<&Item> = items.iter().collect();
    // By start; at equal starts the longer (outer) call first.
    v.sort_by_key(|it| {
        (
            it.start.unwrap_or(0),
            std::cmp::Reverse(it.end.unwrap_or(u64::MAX)),
        )
    });
    v
}

fn secs(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

fn duration(ns: u64) -> String {
    match ns {
        n if n < 10_000 => format!("{n}ns"),
        n if n < 10_000_000 => format!("{:.1}us", n as f64 / 1e3),
        n if n < 10_000_000_000 => format!("{:.1}ms", n as f64 / 1e6),
        n => format!("{:.2}s", n as f64 / 1e9),
    }
}

/// Formats a value for people.
pub fn value(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Hex(h) => format!("{h:#x}"),
        Value::Enum { raw, name } => format!("{name}({raw})"),
        Value::CodeAddr(a) => format!("code:{a:#x}"),
        Value::Str(s) => s.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => format!("{f}"),
    }
}

/// One call's line.
pub fn line(it: &Item, t0: u64, depth: usize) -> String {
    let mut s = String::new();
    let start = match it.start {
        Some(st) => secs(st.saturating_sub(t0)),
        None => "(before log)".into(),
    };
    let dur = match (it.start, it.end) {
        _ if it.instant => "instant".to_string(),
        (Some(a), Some(b)) => format!("+{}", duration(b.saturating_sub(a))),
        (None, Some(_)) => "?".into(),
        (_, None) => "UNFINISHED".into(),
    };
    let _ = write!(
        s,
        "{start:>14} {dur:>10}  {}{}(",
        "  ".repeat(depth),
        it.name
    );
    for (i, a) in it.args.iter().enumerate() {
        let _ = write!(
            s,
            "{}{}={}",
            if i > 0 { ", " } else { "" },
            a.name,
            value(&a.value)
        );
    }
    s.push(')');
    let mut results = it.results.iter();
    if let Some(r) = results.next() {
        if r.name.as_str() == "ret" {
            let _ = write!(s, " = {}", value(&r.value));
        } else {
            let _ = write!(s, " -> {}={}", r.name, value(&r.value));
        }
    }
    for r in results {
        let _ = write!(s, " -> {}={}", r.name, value(&r.value));
    }
    if it.end.is_none() && !it.instant {
        s.push_str("  ... never returned");
    }
    if !it.links.is_empty() {
        s.push_str("  [");
        for (i, l) in it.links.iter().enumerate() {
            let _ = write!(
                s,
                "{}{}={:#x}",
                if i > 0 { " " } else { "" },
                l.key,
                l.value
            );
        }
        s.push(']');
    }
    s
}
