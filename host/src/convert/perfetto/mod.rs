//! Perfetto traces from the calls, written as they stream by in start order: a process track
//! per process, a thread track per thread, one slice per call, and flows joining consecutive
//! calls that share a value of a link key. Encoded by hand (proto.rs) as `Trace.packet`s.
//!
//! Rules kept so that every viewer draws the same thing:
//! - one last-in-first-out stack of slices per track: a call that overlaps another without
//!   nesting in it goes to a child track of its thread (layout.rs);
//! - packets in timestamp order on the one sequence; at equal timestamps an END before the
//!   next BEGIN; END events unnamed;
//! - every track descriptor before its first use; names, annotation names and string values
//!   interned, with the sequence's incremental state cleared on its first packet;
//! - timestamps as deltas on an incremental, sequence-scoped clock (id 64, declared with its
//!   start in the first packet's clock snapshot, as the Perfetto SDK does): ~2 bytes a packet
//!   instead of ~8 for an absolute time in ns;
//! - no `SEQ_NEEDS_INCREMENTAL_STATE` flag on the event packets (2 bytes each): the trace
//!   processor reads it only to skip packets whose sequence lost its state, which a file
//!   written whole from its clearing first packet never does;
//! - one flow id per chain of calls sharing a value, begun and stepped by `flow_ids` and
//!   ended by `terminating_flow_ids`, as flows v2 are read (flows.rs).
//!
//! The device side's slices (crate::convert::device) are drawn on their queue's lanes, named
//! after their enqueuing call (with its code's function, and ` (pending)` when never proven
//! done), each joined from its enqueuing call by a flow in every file.
//!
//! Calls still open when the log ended are drawn to its end and annotated `unfinished`;
//! exits whose entry predates the log start at its beginning, annotated `entry_before_log`.
//! Every file gets the same packets but for the flows: each packet is encoded once, and
//! each file adds its own flow ids.

mod files;
mod flows;
mod handoff;
pub mod layout;
mod proto;

use std::io;
use std::path::PathBuf;

use rustc_hash::FxHashMap;

use crate::calls::call::{Call, Strings, V};
use crate::convert::device;
use files::{Packet, Parts};
use flows::{Edges, Flows};
pub use handoff::Output;
use layout::{Layout, TrackEv};
use proto::Msg;

// Perfetto field numbers (protos/perfetto/trace/...).
const P_TIMESTAMP: u32 = 8;
const P_CLOCK_SNAPSHOT: u32 = 6;
const P_TIMESTAMP_CLOCK_ID: u32 = 58;
const P_DEFAULTS: u32 = 59;
const DEFAULTS_TIMESTAMP_CLOCK_ID: u32 = 58;
/// The trace's clock: timestamps are CLOCK_MONOTONIC values (bpftrace's `nsecs`), drawn on
/// the viewers' default clock (BOOTTIME) as before, without an offset.
const CLOCK_BOOTTIME: u64 = 6;
/// The sequence's own incremental clock (user-defined ids are 64..127).
const CLOCK_INCREMENTAL: u64 = 64;
const INTERNED_EVENT_NAMES: u32 = 2;
const INTERNED_ANNOTATION_NAMES: u32 = 3;
const INTERNED_STRING_VALUES: u32 = 29;
const DA_STRING_VALUE_IID: u32 = 17;
const P_SEQ_ID: u32 = 10;
const P_TRACK_EVENT: u32 = 11;
const P_INTERNED: u32 = 12;
const P_SEQ_FLAGS: u32 = 13;
const P_TRACK_DESCRIPTOR: u32 = 60;
const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
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

/// A string annotation value, by what it is made of.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum StringValue {
    /// Enum name id and raw value: `hipErrorNoDevice(100)`.
    Enum(u32, i64),
    Str(u32),
}

/// The trace files of one conversion, fed the calls in start order.
pub struct TraceSet {
    files: Output,
    layout: Layout,
    flows: Flows,
    names: FxHashMap<u32, u64>,
    /// Device slices' names, by (call, its code's function, pending): in the same iids as
    /// `names`.
    device_names: FxHashMap<(u32, Option<u32>, bool), u64>,
    /// The names device slices use, when there are any.
    device: Option<device::Names>,
    /// The current call's device flow: (id, whether it ends here).
    device_flow: Option<(u64, bool)>,
    ann_names: FxHashMap<u32, u64>,
    /// Interned string values (as the text log shows them).
    string_values: FxHashMap<StringValue, u64>,
    /// The incremental clock's time: the last packet's timestamp.
    clock: u64,
    unfinished: u32,
    before_log: u32,
    first_packet: bool,
    // Reused buffers.
    evs: Vec<TrackEv>,
    edges: Vec<Edges>,
    te: Msg,
    interned: Msg,
    post: Msg,
    pre: Msg,
    annotation: Msg,
    text: String,
}

impl TraceSet {
    /// `files`: the trace files (handoff.rs); `keys`: every chosen key, in order; `counts`:
    /// calls per (key, value), from the reading pass. `t0`: no packet's time is earlier (the
    /// log's first time).
    pub fn new(
        t0: u64,
        files: Output,
        keys: &[u32],
        counts: &FxHashMap<(u32, u64), u32>,
        layout: Layout,
        strings: &mut Strings,
    ) -> TraceSet {
        TraceSet {
            files,
            layout,
            flows: Flows::new(keys, counts),
            names: FxHashMap::default(),
            device_names: FxHashMap::default(),
            device: None,
            device_flow: None,
            ann_names: FxHashMap::default(),
            string_values: FxHashMap::default(),
            clock: t0,
            unfinished: strings.id("unfinished"),
            before_log: strings.id("entry_before_log"),
            first_packet: true,
            evs: Vec::new(),
            edges: Vec::new(),
            te: Msg::default(),
            interned: Msg::default(),
            post: Msg::default(),
            pre: Msg::default(),
            annotation: Msg::default(),
            text: String::new(),
        }
    }

    /// The calls include device slices (crate::convert::device), with these names.
    pub fn device(&mut self, names: device::Names) {
        self.device = Some(names);
    }

    /// Writes what comes with `call`, the next call in start order.
    pub fn push(&mut self, call: &Call, strings: &Strings) -> io::Result<()> {
        let mut evs = std::mem::take(&mut self.evs);
        evs.clear();
        self.layout.place(call, &mut evs);
        for ev in &evs {
            self.event(ev, Some(call), strings)?;
        }
        self.evs = evs;
        Ok(())
    }

    /// Ends the slices still open and flushes the files.
    pub fn finish(mut self, strings: &Strings) -> io::Result<Vec<(PathBuf, TraceSummary)>> {
        let mut evs = std::mem::take(&mut self.evs);
        evs.clear();
        self.layout.finish(&mut evs);
        for ev in &evs {
            self.event(ev, None, strings)?;
        }
        self.files.finish(self.layout.tracks)
    }

    /// The sequence's first packet: clears its incremental state, declares the incremental
    /// clock (starting at `t0`, synced to BOOTTIME) and makes it the packets' default clock.
    fn start_sequence(&mut self) -> io::Result<()> {
        let t0 = self.clock;
        let mut boot = Msg::default();
        boot.uint(1, CLOCK_BOOTTIME).uint(2, t0);
        let mut incr = Msg::default();
        incr.uint(1, CLOCK_INCREMENTAL).uint(2, t0).uint(3, 1);
        let mut snapshot = Msg::default();
        snapshot.msg(1, &boot).msg(1, &incr);
        let mut defaults = Msg::default();
        defaults.uint(DEFAULTS_TIMESTAMP_CLOCK_ID, CLOCK_INCREMENTAL);
        let mut p = Msg::default();
        p.uint(P_TIMESTAMP, t0)
            .uint(P_TIMESTAMP_CLOCK_ID, CLOCK_BOOTTIME)
            .msg(P_CLOCK_SNAPSHOT, &snapshot)
            .msg(P_DEFAULTS, &defaults)
            .uint(P_SEQ_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED)
            .uint(P_SEQ_ID, SEQUENCE);
        self.files.write(&Packet {
            parts: Parts {
                pre: &p.buf,
                te: None,
                post: &[],
            },
            edges: &[],
            device_flow: None,
            begin: false,
        })
    }

    /// A packet's timestamp field: the delta on the incremental clock.
    fn timestamp(&mut self, ts: u64) {
        debug_assert!(ts >= self.clock, "packets out of time order");
        self.pre.uint(P_TIMESTAMP, ts.saturating_sub(self.clock));
        self.clock = self.clock.max(ts);
    }

    fn event(&mut self, ev: &TrackEv, call: Option<&Call>, strings: &Strings) -> io::Result<()> {
        if self.first_packet {
            self.first_packet = false;
            self.start_sequence()?;
        }
        self.pre.clear();
        self.te.clear();
        self.interned.clear();
        self.post.clear();
        self.edges.clear();
        self.device_flow = None;
        let mut has_te = true;
        let mut begin = false;
        match ev {
            TrackEv::Descriptor(d) => {
                has_te = false;
                self.post.bytes(P_TRACK_DESCRIPTOR, d);
            }
            TrackEv::End { ts, track } => {
                self.timestamp(*ts);
                self.te
                    .uint(TE_TYPE, TYPE_SLICE_END)
                    .uint(TE_TRACK_UUID, *track);
            }
            TrackEv::Begin { ts, track } | TrackEv::Instant { ts, track } => {
                let call = call.expect("a begin comes with its call");
                begin = matches!(ev, TrackEv::Begin { .. });
                self.timestamp(*ts);
                let kind = if begin {
                    TYPE_SLICE_BEGIN
                } else {
                    TYPE_INSTANT
                };
                self.te.uint(TE_TYPE, kind).uint(TE_TRACK_UUID, *track);
                self.describe(call, strings);
                if begin {
                    self.flows.edges(call, &mut self.edges);
                    // From the enqueuing call to its device slice, in every file.
                    if let Some(d) = self.device {
                        self.device_flow = call
                            .links
                            .iter()
                            .find(|l| l.0 == d.link)
                            .map(|l| (device::FLOW_BASE | l.1, device::is_device(call)));
                    }
                }
            }
        }
        if !self.interned.buf.is_empty() {
            self.post.msg(P_INTERNED, &self.interned);
        }
        self.post.uint(P_SEQ_ID, SEQUENCE);

        // The packet: [timestamp] [track_event: common fields + each file's flows] [post].
        self.files.write(&Packet {
            parts: Parts {
                pre: &self.pre.buf,
                te: has_te.then_some(self.te.buf.as_slice()),
                post: &self.post.buf,
            },
            edges: &self.edges,
            device_flow: self.device_flow,
            begin,
        })
    }

    /// The name and annotations of a beginning slice or instant, interning new names.
    fn describe(&mut self, call: &Call, strings: &Strings) {
        let next = (self.names.len() + self.device_names.len()) as u64 + 1;
        let iid = match self.device.filter(|_| device::is_device(call)) {
            Some(d) => self.device_name(call, d, next, strings),
            None => *self.names.entry(call.name).or_insert_with(|| {
                let mut en = Msg::default();
                en.uint(1, next).string(2, strings.get(call.name));
                self.interned.msg(INTERNED_EVENT_NAMES, &en);
                next
            }),
        };
        self.te.uint(TE_NAME_IID, iid);
        for &(name, v) in call.args.iter().chain(call.results.iter()) {
            self.annotate(name, v, strings);
        }
        if call.end.is_none() && !call.instant {
            self.annotate(self.unfinished, V::Bool(true), strings);
        }
        if call.start.is_none() {
            self.annotate(self.before_log, V::Bool(true), strings);
        }
    }

    /// A device slice's name: its enqueuing call's, with the function of its code (a kernel's
    /// symbol) and ` (pending)` when it was never proven done; interned as `next` if new.
    fn device_name(&mut self, call: &Call, d: device::Names, next: u64, strings: &Strings) -> u64 {
        let function = call.args.iter().find_map(|&(n, v)| match v {
            V::Str(s) if n == d.function => Some(s),
            _ => None,
        });
        let pending = call
            .results
            .iter()
            .any(|&(n, v)| n == d.state && v == V::Str(d.pending));
        *self
            .device_names
            .entry((call.name, function, pending))
            .or_insert_with(|| {
                let mut name = strings.get(call.name).to_string();
                if let Some(f) = function {
                    name.push_str(": ");
                    name.push_str(device::short_symbol(strings.get(f)));
                }
                if pending {
                    name.push_str(" (pending)");
                }
                let mut en = Msg::default();
                en.uint(1, next).string(2, &name);
                self.interned.msg(INTERNED_EVENT_NAMES, &en);
                next
            })
    }

    fn annotate(&mut self, name: u32, v: V, strings: &Strings) {
        let next = self.ann_names.len() as u64 + 1;
        let iid = *self.ann_names.entry(name).or_insert_with(|| {
            let mut an = Msg::default();
            an.uint(1, next).string(2, strings.get(name));
            self.interned.msg(INTERNED_ANNOTATION_NAMES, &an);
            next
        });
        // DebugAnnotation: name_iid, then one value field.
        let da = &mut self.annotation;
        da.clear();
        da.uint(1, iid);
        match v {
            V::Int(x) => da.int(4, x),
            V::UInt(x) => da.uint(3, x),
            V::Hex(x) | V::Code(x) => da.uint(7, x),
            // As the text log shows it: `hipErrorNoDevice(100)`; interned (a few distinct
            // values, repeated on most calls).
            V::Enum { .. } | V::Str(_) => {
                let key = match v {
                    V::Enum { raw, name } => StringValue::Enum(name, raw),
                    V::Str(s) => StringValue::Str(s),
                    _ => unreachable!("matched above"),
                };
                let next = self.string_values.len() as u64 + 1;
                let iid = *self.string_values.entry(key).or_insert_with(|| {
                    self.text.clear();
                    crate::calls::format::value(&mut self.text, v, strings);
                    let mut is = Msg::default();
                    is.uint(1, next).string(2, &self.text);
                    self.interned.msg(INTERNED_STRING_VALUES, &is);
                    next
                });
                da.uint(DA_STRING_VALUE_IID, iid)
            }
            V::Bool(b) => da.uint(2, u64::from(b)),
            V::Float(f) => da.double(5, f),
        };
        self.te.msg(TE_DEBUG, da);
    }
}
