//! The per-thread text log: processes, then threads, then calls in start order, indented by
//! nesting, with time, duration, decoded arguments, return names and link keys. Useful to read
//! a hang directly and to check the Perfetto files by hand.
//!
//! The calls come from the sorter thread by thread, each thread's in start order
//! (crate::convert::sort), so the log streams into its file: memory stays bounded whatever
//! the log's size, and nothing is spilled and copied back.
//!
//! The device side's slices (crate::convert::device) are not calls of the program: they are
//! left out of the threads, and the header says what the traces show of them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::sort::Sorted;
use crate::calls::call::{Call, Strings, V};
use crate::calls::format::call_text;
use crate::calls::numfmt::{push_hex, push_nine, push_u64};
use crate::calls::sources::PID_MASK;
use crate::convert::device::{self, DeviceSummary};
use crate::decode::Stats;
use crate::log::Diagnostics;

pub struct TextWriter {
    t0: u64,
    t_last: u64,
    /// The link key joining enqueuing calls to their device slices: not shown.
    hidden_link: Option<u32>,
}

/// What the header of the text log says.
pub struct Header<'a> {
    /// The log (or logs) converted, as named at the top.
    pub log: &'a str,
    /// Each process's host, by its number (several logs only, crate::calls::sources).
    pub hosts: Option<&'a HashMap<u32, String>>,
    pub schema_hash: u64,
    pub stats: &'a Stats,
    /// Each log's problems.
    pub diags: &'a [Diagnostics],
    /// tid -> (pid, comm)
    pub comms: &'a HashMap<u32, (u32, String)>,
    /// The calls that never returned, by thread, outermost first.
    pub in_flight: &'a [Call],
    pub strings: &'a Strings,
    /// `bthost report`'s text for this log (crate::report), when its packs declare groups:
    /// the hang in a screenful, before the calls in flight.
    pub report: Option<&'a str>,
    /// What the traces show of the device side, when they show any.
    pub device: Option<&'a DeviceSummary>,
}

impl TextWriter {
    /// `t0`, `t_last`: the first and last times in the log (times are printed from `t0`).
    pub fn new(t0: u64, t_last: u64) -> TextWriter {
        TextWriter {
            t0,
            t_last,
            hidden_link: None,
        }
    }

    /// Calls' links of key `key` are not shown (crate::convert::device's).
    pub fn hide_link(&mut self, key: u32) {
        self.hidden_link = Some(key);
    }

    /// A call as the header lists it: its thread (`pid P tid T (comm)`), and its line.
    fn listed(&self, c: &Call, h: &Header) -> (String, String) {
        let comm = h.comms.get(&c.tid).map_or("", |x| x.1.as_str());
        let mut s = String::new();
        line(&mut s, c, self.t0, 0, h.strings, None);
        let who = match h.hosts.and_then(|hs| hs.get(&c.pid)) {
            Some(host) => format!(
                "{host} pid {} tid {} ({comm})",
                c.pid & PID_MASK,
                c.tid & PID_MASK
            ),
            None => format!("pid {} tid {} ({comm})", c.pid, c.tid),
        };
        (who, s.trim_start().to_string())
    }

    /// Writes the whole log to `w`: the header, then the calls of `sorted`.
    pub fn write(&self, w: &mut impl Write, h: &Header, sorted: &Sorted) -> io::Result<()> {
        let t0 = self.t0;
        let threads = sorted
            .threads()
            .iter()
            .filter(|t| !device::is_lane(t.1))
            .count();
        writeln!(
            w,
            "# bthost text log of {} (schema {:016x})",
            h.log, h.schema_hash
        )?;
        writeln!(
            w,
            "# {} records, {} threads; times in seconds since the first record (t0 = {}.{:09} s, CLOCK_MONOTONIC)",
            h.stats.records,
            threads,
            t0 / 1_000_000_000,
            t0 % 1_000_000_000
        )?;
        if h.stats.lost_events > 0 {
            writeln!(
                w,
                "# WARNING: bpftrace lost {} events; some calls may be unmatched",
                h.stats.lost_events
            )?;
        }
        if h.stats.lost_records > 0 {
            writeln!(
                w,
                "# WARNING: {} records never reached the log (gaps in their threads' record numbers); some calls may be unmatched",
                h.stats.lost_records
            )?;
        }
        if h.stats.overwritten > 0 {
            writeln!(
                w,
                "# flight recorder: {} older records were overwritten by the ring, as it keeps each thread's last ones",
                h.stats.overwritten
            )?;
        }
        for d in h.diags.iter().filter(|d| !d.is_empty()) {
            for l in d.to_string().lines() {
                writeln!(w, "# {l}")?;
            }
        }
        if let Some(d) = h.device {
            writeln!(
                w,
                "# device side (inferred from the host calls, drawn in the traces): {d}"
            )?;
        }
        // The hang in a screenful, then where every thread was when tracing stopped.
        if let Some(r) = h.report {
            writeln!(w, "#")?;
            for l in r.lines() {
                writeln!(w, "# {l}")?;
            }
        }
        if !h.in_flight.is_empty() {
            writeln!(
                w,
                "#\n# IN FLIGHT when the log ended: {} calls never returned (per thread, outermost first; open: from their start to {})",
                h.in_flight.len(),
                if h.stats.stopped_at.is_some() {
                    "when tracing stopped"
                } else {
                    "the log's last record"
                }
            )?;
            let t_end = self.t_last;
            for c in h.in_flight {
                let (who, s) = self.listed(c, h);
                let open = match c.start {
                    Some(st) => {
                        let mut d = String::new();
                        duration(&mut d, t_end.saturating_sub(st));
                        d
                    }
                    None => "?".into(),
                };
                writeln!(w, "#   {who}, open >= {open}: {s}")?;
            }
        }
        // Each thread's calls, indented by nesting: the ends of the calls enclosing the next.
        let mut stack: Vec<u64> = Vec::new();
        let mut call = Call::default();
        let mut text = String::new();
        let mut last_pid = None;
        let mut current = None;
        sorted.by_thread(|(pid, tid), b| {
            call.decode(b);
            if device::is_device(&call) {
                return Ok(());
            }
            if current != Some((pid, tid)) {
                current = Some((pid, tid));
                stack.clear();
                if last_pid != Some(pid) {
                    match h.hosts.and_then(|hs| hs.get(&pid)) {
                        Some(host) => writeln!(w, "\n== process {} on {host} ==", pid & PID_MASK)?,
                        None => writeln!(w, "\n== process {pid} ==")?,
                    }
                    last_pid = Some(pid);
                }
                let comm = h.comms.get(&tid).map_or("", |c| c.1.as_str());
                writeln!(w, "-- thread {tid} ({comm}) --")?;
            }
            let start = call.start.unwrap_or(t0);
            while stack
                .last()
                .is_some_and(|&end| end <= start && call.start.is_some())
            {
                stack.pop();
            }
            text.clear();
            line(
                &mut text,
                &call,
                t0,
                stack.len(),
                h.strings,
                self.hidden_link,
            );
            text.push('\n');
            w.write_all(text.as_bytes())?;
            if !call.instant {
                stack.push(call.end.unwrap_or(u64::MAX));
            }
            Ok(())
        })
    }
}

fn secs(s: &mut String, ns: u64) {
    push_u64(s, ns / 1_000_000_000);
    s.push('.');
    push_nine(s, ns % 1_000_000_000);
}

fn duration(s: &mut String, ns: u64) {
    let _ = match ns {
        n if n < 10_000 => {
            push_u64(s, n);
            s.push_str("ns");
            Ok(())
        }
        n if n < 10_000_000 => write!(s, "{:.1}us", n as f64 / 1e3),
        n if n < 10_000_000_000 => write!(s, "{:.1}ms", n as f64 / 1e6),
        n => write!(s, "{:.2}s", n as f64 / 1e9),
    };
}

/// Appends `text` right-aligned in `width` columns.
fn pad_left(s: &mut String, text: &str, width: usize) {
    for _ in text.len()..width {
        s.push(' ');
    }
    s.push_str(text);
}

/// Appends one call's line (without newline) to `s`, without its links of key `hidden`.
pub fn line(
    s: &mut String,
    c: &Call,
    t0: u64,
    depth: usize,
    strings: &Strings,
    hidden: Option<u32>,
) {
    let mut col = String::new();
    match c.start {
        Some(st) => secs(&mut col, st.saturating_sub(t0)),
        None => col.push_str("(before log)"),
    }
    pad_left(s, &col, 14);
    s.push(' ');
    col.clear();
    match (c.start, c.end) {
        _ if c.instant => col.push_str("instant"),
        (Some(a), Some(b)) => {
            col.push('+');
            duration(&mut col, b.saturating_sub(a));
        }
        (None, Some(_)) => col.push('?'),
        (_, None) => col.push_str("UNFINISHED"),
    }
    pad_left(s, &col, 10);
    s.push_str("  ");
    for _ in 0..depth {
        s.push_str("  ");
    }
    call_text(s, c, strings);
    if c.end.is_none() && !c.instant {
        s.push_str("  ... never returned");
    }
    // The link keys whose values the line does not show already (an argument of the key's
    // name with the same value, e.g. `stream=0x5eed`, is not repeated): the key a plugin
    // derived (`coll`, `device`) is what the reader cannot see otherwise.
    let mut open = false;
    for &(k, v) in &c.links {
        if shown(c, k, v) || Some(k) == hidden {
            continue;
        }
        s.push_str(if open { " " } else { "  [" });
        open = true;
        s.push_str(strings.get(k));
        s.push('=');
        push_hex(s, v);
    }
    if open {
        s.push(']');
    }
}

/// Whether the call shows `key=value` among its arguments or results.
fn shown(c: &Call, key: u32, value: u64) -> bool {
    c.args.iter().chain(c.results.iter()).any(|&(n, v)| {
        n == key
            && match v {
                V::Hex(x) | V::UInt(x) | V::Code(x) => x == value,
                V::Int(x) | V::Enum { raw: x, .. } => x as u64 == value,
                _ => false,
            }
    })
}
