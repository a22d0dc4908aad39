//! Perfetto traces from the per-thread calls: a process track per process, a thread track per
//! thread, one slice per call, and flows joining consecutive calls that share a value of a
//! link key. Encoded by hand (proto.rs) as a stream of `Trace.packet` records.
//!
//! Rules kept so that every viewer draws the same thing:
//! - one last-in-first-out stack of slices per track: a call that overlaps another without
//!   nesting in it goes to a child track of its thread;
//! - packets in timestamp order on the one sequence; per track, at equal timestamps the
//!   earlier END before the next BEGIN; END events unnamed;
//! - every track descriptor before its first use; names and annotation names interned, with
//!   the sequence's incremental state cleared on its first packet;
//! - each flow edge a fresh id, from the earlier call (flow_ids) to the later one
//!   (terminating_flow_ids).
//!
//! Calls still open when the log ended are drawn to its end and annotated `unfinished`;
//! exits whose entry predates the log start at its beginning, annotated `entry_before_log`.

mod proto;

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use bthost_plugin_api::Value;

use super::text::{Item, TextLog};
use crate::hash::fnv1a64;
use proto::Msg;

// Perfetto field numbers (protos/perfetto/trace/...).
const TRACE_PACKET: u32 = 1;
const P_TIMESTAMP: u32 = 8;
const P_SEQ_ID: u32 = 10;
const P_TRACK_EVENT: u32 = 11;
const P_INTERNED: u32 = 12;
const P_SEQ_FLAGS: u32 = 13;
const P_TRACK_DESCRIPTOR: u32 = 60;
const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
const SEQ_NEEDS_INCREMENTAL_STATE: u64 = 2;
const TE_TYPE: u32 = 9;
const TE_NAME_IID: u32 = 10;
const TE_TRACK_UUID: u32 = 11;
const TE_DEBUG: u32 = 4;
const TE_FLOW_IDS: u32 = 47;
const TE_TERMINATING_FLOW_IDS: u32 = 48;
const TYPE_SLICE_BEGIN: u64 = 1;
const TYPE_SLICE_END: u64 = 2;
const TYPE_INSTANT: u64 = 3;
const SEQUENCE: u64 = 1;

/// What a trace file was made of.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    pub slices: u64,
    pub flows: u64,
    pub tracks: u64,
}

/// One event of one track, before the global ordering.
struct Ev {
    ts: u64,
    track: u64,
    kind: u64,
    item: usize,
}

/// What every trace of one log shares, computed once: the calls, the tracks (their
/// descriptor packets), and the slice events in the order they are written. Only the flows
/// differ from one trace (link key) to the next.
pub struct Layout<'a> {
    items: Vec<&'a Item>,
    descriptors: Vec<Msg>,
    events: Vec<Ev>,
    /// `events` indices in timestamp order; each track's own order kept at equal timestamps.
    order: Vec<usize>,
    t_first: u64,
}

impl<'a> Layout<'a> {
    pub fn new(log: &'a TextLog) -> Layout<'a> {
        let threads: Vec<_> = log.threads().collect();
        let items: Vec<&'a Item> = threads
            .iter()
            .flat_map(|(_, _, its)| its.iter().copied())
            .collect();
        let t_first = items
            .iter()
            .filter_map(|i| i.start.or(i.end))
            .min()
            .unwrap_or(0);
        let t_last = items
            .iter()
            .filter_map(|i| i.end.or(i.start))
            .max()
            .unwrap_or(0);
        let start_of = |i: &Item| i.start.unwrap_or(t_first);
        let end_of = |i: &Item| i.end.unwrap_or(t_last).max(start_of(i));

        let mut descriptors: Vec<Msg> = Vec::new();
        // Tracks: processes, their threads, and child tracks for overlapping calls.
        let uuid = |parts: &[u64]| -> u64 {
            let b: Vec<u8> = parts.iter().flat_map(|p| p.to_le_bytes()).collect();
            fnv1a64(&b) | 1
        };
        let mut last_pid = None;
        let mut events: Vec<Ev> = Vec::new();
        let mut thread_base = 0;
        for ((pid, tid), comm, its) in threads.iter() {
            let p_uuid = uuid(&[1, u64::from(*pid)]);
            if last_pid != Some(*pid) {
                last_pid = Some(*pid);
                let mut pd = Msg::default();
                pd.uint(1, u64::from(*pid));
                if !comm.is_empty() {
                    pd.string(6, comm);
                }
                let mut td = Msg::default();
                td.uint(1, p_uuid).msg(3, &pd);
                let mut p = Msg::default();
                p.msg(P_TRACK_DESCRIPTOR, &td);
                descriptors.push(p);
            }
            let t_uuid = uuid(&[2, u64::from(*pid), u64::from(*tid)]);
            let mut th = Msg::default();
            th.uint(1, u64::from(*pid)).uint(2, u64::from(*tid));
            if !comm.is_empty() {
                th.string(5, comm);
            }
            let mut td = Msg::default();
            td.uint(1, t_uuid).uint(5, p_uuid).msg(4, &th);
            let mut p = Msg::default();
            p.msg(P_TRACK_DESCRIPTOR, &td);
            descriptors.push(p);

            // Lanes: lane 0 is the thread's track; a call that overlaps a lane's open call
            // without nesting in it goes to the next lane (a child track).
            // `items` holds the threads' calls in this same order: this thread's start there.
            let base = thread_base;
            thread_base += its.len();
            let mut lanes: Vec<(u64, Vec<(u64, usize)>)> = vec![(t_uuid, Vec::new())];
            for (n, it) in its.iter().enumerate() {
                let idx = base + n;
                let (s, e) = (start_of(it), end_of(it));
                if it.instant {
                    events.push(Ev {
                        ts: s,
                        track: t_uuid,
                        kind: TYPE_INSTANT,
                        item: idx,
                    });
                    continue;
                }
                let mut placed = false;
                for (lane_uuid, stack) in lanes.iter_mut() {
                    while let Some(&(end, open)) = stack.last() {
                        if end > s {
                            break;
                        }
                        events.push(Ev {
                            ts: end,
                            track: *lane_uuid,
                            kind: TYPE_SLICE_END,
                            item: open,
                        });
                        stack.pop();
                    }
                    if stack.last().is_none_or(|&(end, _)| end >= e) {
                        events.push(Ev {
                            ts: s,
                            track: *lane_uuid,
                            kind: TYPE_SLICE_BEGIN,
                            item: idx,
                        });
                        stack.push((e, idx));
                        placed = true;
                        break;
                    }
                }
                if !placed {
                    let lane_uuid =
                        uuid(&[3, u64::from(*pid), u64::from(*tid), lanes.len() as u64]);
                    let mut td = Msg::default();
                    td.uint(1, lane_uuid).uint(5, t_uuid).string(
                        2,
                        &format!("{comm} {tid} (overlapping calls {})", lanes.len()),
                    );
                    let mut p = Msg::default();
                    p.msg(P_TRACK_DESCRIPTOR, &td);
                    descriptors.push(p);
                    events.push(Ev {
                        ts: s,
                        track: lane_uuid,
                        kind: TYPE_SLICE_BEGIN,
                        item: idx,
                    });
                    lanes.push((lane_uuid, vec![(e, idx)]));
                }
            }
            for (lane_uuid, stack) in lanes.iter_mut() {
                while let Some((end, open)) = stack.pop() {
                    events.push(Ev {
                        ts: end,
                        track: *lane_uuid,
                        kind: TYPE_SLICE_END,
                        item: open,
                    });
                }
            }
        }

        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|&i| (events[i].ts, i));
        Layout {
            items,
            descriptors,
            events,
            order,
            t_first,
        }
    }

    fn start_of(&self, i: &Item) -> u64 {
        i.start.unwrap_or(self.t_first)
    }

    /// Writes the trace to `path`, with flows for `links`.
    pub fn write(&self, path: &Path, links: &[String]) -> io::Result<TraceSummary> {
        let f = std::fs::File::create(path)?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        let mut summary = TraceSummary {
            tracks: self.descriptors.len() as u64,
            ..TraceSummary::default()
        };
        let mut first_packet = true;
        let mut packet = |w: &mut io::BufWriter<std::fs::File>, mut p: Msg| -> io::Result<()> {
            p.uint(P_SEQ_ID, SEQUENCE);
            if first_packet {
                p.uint(P_SEQ_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED);
                first_packet = false;
            }
            let mut t = Msg::default();
            t.msg(TRACE_PACKET, &p);
            w.write_all(&t.buf)
        };
        for d in &self.descriptors {
            packet(&mut w, d.clone())?;
        }

        // Flows: per key value, consecutive calls (by start) joined by a fresh id.
        let mut flows_out: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut flows_in: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut next_flow = 1u64;
        for key in links {
            let mut by_value: HashMap<u64, Vec<usize>> = HashMap::new();
            for (i, it) in self.items.iter().enumerate() {
                if it.instant {
                    continue;
                }
                if let Some(l) = it.links.iter().find(|l| l.key.as_str() == key) {
                    by_value.entry(l.value).or_default().push(i);
                }
            }
            let mut values: Vec<_> = by_value.into_iter().collect();
            values.sort_by_key(|(v, _)| *v);
            for (_, mut calls) in values {
                calls.sort_by_key(|&i| (self.start_of(self.items[i]), i));
                for pair in calls.windows(2) {
                    let id = next_flow;
                    next_flow += 1;
                    flows_out.entry(pair[0]).or_default().push(id);
                    flows_in.entry(pair[1]).or_default().push(id);
                    summary.flows += 1;
                }
            }
        }

        let mut names: HashMap<&str, u64> = HashMap::new();
        let mut ann_names: HashMap<&str, u64> = HashMap::new();
        for &i in &self.order {
            let ev = &self.events[i];
            let it = self.items[ev.item];
            let mut te = Msg::default();
            te.uint(TE_TYPE, ev.kind).uint(TE_TRACK_UUID, ev.track);
            let mut interned = Msg::default();
            let mut new_interned = false;
            if ev.kind != TYPE_SLICE_END {
                let next = names.len() as u64 + 1;
                let iid = *names.entry(it.name).or_insert_with(|| {
                    let mut en = Msg::default();
                    en.uint(1, next).string(2, it.name);
                    interned.msg(2, &en);
                    new_interned = true;
                    next
                });
                te.uint(TE_NAME_IID, iid);
                let mut annotate = |te: &mut Msg, name: &'static str, v: &Value| {
                    let next = ann_names.len() as u64 + 1;
                    let iid = *ann_names.entry(name).or_insert_with(|| {
                        let mut an = Msg::default();
                        an.uint(1, next).string(2, name);
                        interned.msg(3, &an);
                        new_interned = true;
                        next
                    });
                    let mut da = Msg::default();
                    da.uint(1, iid);
                    match v {
                        Value::Int(x) => da.int(4, *x),
                        Value::UInt(x) => da.uint(3, *x),
                        Value::Hex(x) | Value::CodeAddr(x) => da.uint(7, *x),
                        Value::Enum { .. } => da.string(6, &super::text::value(v)),
                        Value::Str(s) => da.string(6, s),
                        Value::Bool(b) => da.uint(2, u64::from(*b)),
                        Value::Float(f) => da.double(5, *f),
                    };
                    te.msg(TE_DEBUG, &da);
                };
                for a in it.args.iter().chain(it.results.iter()) {
                    annotate(&mut te, a.name.as_str(), &a.value);
                }
                if it.end.is_none() && !it.instant {
                    annotate(&mut te, "unfinished", &Value::Bool(true));
                }
                if it.start.is_none() {
                    annotate(&mut te, "entry_before_log", &Value::Bool(true));
                }
                if ev.kind == TYPE_SLICE_BEGIN {
                    summary.slices += 1;
                    for id in flows_out.get(&ev.item).into_iter().flatten() {
                        te.fixed64(TE_FLOW_IDS, *id);
                    }
                    for id in flows_in.get(&ev.item).into_iter().flatten() {
                        te.fixed64(TE_TERMINATING_FLOW_IDS, *id);
                    }
                }
            }
            let mut p = Msg::default();
            p.uint(P_TIMESTAMP, ev.ts).msg(P_TRACK_EVENT, &te);
            if new_interned {
                p.msg(P_INTERNED, &interned);
            }
            p.uint(P_SEQ_FLAGS, SEQ_NEEDS_INCREMENTAL_STATE);
            packet(&mut w, p)?;
        }
        w.flush()?;
        Ok(summary)
    }
}
