//! The per-thread text log: processes, then threads, then calls in start order, indented by
//! nesting, with time, duration, decoded arguments, return names and link keys. Useful to read
//! a hang directly and to check the Perfetto files by hand.
//!
//! Calls arrive in start order across all threads, but the log is grouped by thread: each
//! thread's lines collect in its own buffer, and when the buffers together pass a budget they
//! go, as chunks, to one spill file beside the output. Writing the log copies each thread's
//! chunks in order. Memory stays bounded whatever the log's size.
//!
//! The device side's slices (crate::convert::device) are not calls of the program: they are
//! left out of the threads, and the header says what the traces show of them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use super::bgwrite::BgWriter;
use crate::calls::call::{Call, Strings, V};
use crate::calls::format::call_text;
use crate::calls::numfmt::{push_hex, push_nine, push_u64};
use crate::calls::sources::PID_MASK;
use crate::convert::device::{self, DeviceSummary};
use crate::decode::Stats;
use crate::log::Diagnostics;
use crate::safe_out::OutDir;

#[derive(Default)]
struct ThreadText {
    /// Lines not yet spilled.
    buf: String,
    /// (offset, length) of this thread's chunks in the spill file, in order.
    chunks: Vec<(u64, usize)>,
    /// Ends of the calls enclosing the next one, for indentation.
    stack: Vec<u64>,
}

pub struct TextWriter {
    threads: BTreeMap<(u32, u32), ThreadText>,
    t0: u64,
    t_last: u64,
    buffered: usize,
    budget: usize,
    /// The folder of the spill file, and its name there.
    dir: OutDir,
    spill_name: String,
    /// The spill file, written by its own thread, and its length so far.
    spill: Option<(BgWriter, u64)>,
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
    /// `t0`, `t_last`: the first and last times in the log (times are printed from `t0`);
    /// lines spill to a file in `dir` past `budget` bytes.
    pub fn new(t0: u64, t_last: u64, dir: &OutDir, budget: usize) -> TextWriter {
        TextWriter {
            threads: BTreeMap::new(),
            t0,
            t_last,
            buffered: 0,
            budget,
            dir: dir.clone(),
            spill_name: format!(".bthost-text-{}.tmp", std::process::id()),
            spill: None,
            hidden_link: None,
        }
    }

    /// Calls' links of key `key` are not shown (crate::convert::device's).
    pub fn hide_link(&mut self, key: u32) {
        self.hidden_link = Some(key);
    }

    /// Adds the next call in start order.
    pub fn push(&mut self, c: &Call, strings: &Strings) -> io::Result<()> {
        if device::is_device(c) {
            return Ok(());
        }
        let th = self.threads.entry((c.pid, c.tid)).or_default();
        let start = c.start.unwrap_or(self.t0);
        while th
            .stack
            .last()
            .is_some_and(|&end| end <= start && c.start.is_some())
        {
            th.stack.pop();
        }
        let depth = th.stack.len();
        // The budget counts the buffers' capacity, not their length: what the process holds.
        let before = th.buf.capacity();
        line(&mut th.buf, c, self.t0, depth, strings, self.hidden_link);
        th.buf.push('\n');
        self.buffered += th.buf.capacity() - before;
        if !c.instant {
            th.stack.push(c.end.unwrap_or(u64::MAX));
        }
        if self.buffered >= self.budget {
            self.spill_all()?;
        }
        Ok(())
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

    fn spill_all(&mut self) -> io::Result<()> {
        if self.spill.is_none() {
            let f = self
                .dir
                .create_file(&self.spill_name)
                .map_err(io::Error::other)?;
            self.spill = Some((BgWriter::new(f), 0));
        }
        let (w, len) = self.spill.as_mut().expect("opened above");
        for th in self.threads.values_mut() {
            if th.buf.is_empty() {
                continue;
            }
            w.write_all(th.buf.as_bytes())?;
            th.chunks.push((*len, th.buf.len()));
            *len += th.buf.len() as u64;
            // Freed, not cleared: a thread's buffer grows again only as its share needs.
            th.buf = String::new();
        }
        w.flush()?;
        self.buffered = 0;
        Ok(())
    }

    /// Writes the whole log to `w`.
    pub fn write(mut self, w: &mut BufWriter<File>, h: &Header) -> io::Result<()> {
        let t0 = self.t0;
        writeln!(
            w,
            "# bthost text log of {} (schema {:016x})",
            h.log, h.schema_hash
        )?;
        writeln!(
            w,
            "# {} records, {} threads; times in seconds since the first record (t0 = {}.{:09} s, CLOCK_MONOTONIC)",
            h.stats.records,
            self.threads.len(),
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
        // The spill file, complete, to read the chunks back from.
        let mut spilled = match self.spill.take() {
            Some((w, _)) => {
                w.finish()?;
                Some(self.dir.open_file(&self.spill_name)?)
            }
            None => None,
        };
        let mut last_pid = None;
        for ((pid, tid), th) in &self.threads {
            if last_pid != Some(*pid) {
                match h.hosts.and_then(|hs| hs.get(pid)) {
                    Some(host) => writeln!(w, "\n== process {} on {host} ==", pid & PID_MASK)?,
                    None => writeln!(w, "\n== process {pid} ==")?,
                }
                last_pid = Some(*pid);
            }
            let comm = h.comms.get(tid).map_or("", |c| c.1.as_str());
            writeln!(w, "-- thread {tid} ({comm}) --")?;
            if let Some(f) = spilled.as_mut() {
                // File to file: io::copy uses copy_file_range, so the kernel moves the bytes
                // without a round trip through this process.
                w.flush()?;
                for &(off, len) in &th.chunks {
                    f.seek(SeekFrom::Start(off))?;
                    let n = io::copy(&mut (&*f).take(len as u64), w.get_mut())?;
                    if n != len as u64 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the text spill file is shorter than written",
                        ));
                    }
                }
            }
            w.write_all(th.buf.as_bytes())?;
        }
        if spilled.take().is_some() {
            self.dir.remove_file(&self.spill_name)?;
        }
        Ok(())
    }
}

impl Drop for TextWriter {
    fn drop(&mut self) {
        // An error left the spill file behind.
        let _ = self.dir.remove_file(&self.spill_name);
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
