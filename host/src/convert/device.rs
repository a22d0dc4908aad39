//! The device side of the traces, inferred from the host calls alone (the "device" rows of
//! Nsight Systems and rocprofv3, without a device-side tracer): each queue (stream) of each
//! process gets a track of the work its calls enqueued, one slice per operation, from the
//! enqueuing call's return to the call that proved it done (crate::calls::completion, by the
//! packs' `[completion]` rules), or to the log's end when nothing did (`state = pending`).
//!
//! The slices are calls like the host's: made here, during the reading pass, as the proofs
//! come, and handed to the same sorter the host calls go through (crate::convert::sort), so
//! they reach the writers in start order with the same bounded memory. Each is on a thread id
//! of its own per (process, queue, lane), above every real one ([`LANE_TID`]), with a sequence
//! number above every real call's ([`is_device`]), which the writers recognise: the Perfetto
//! writer draws them on the queue's track and leaves out the thread, the text log leaves them
//! out of the program's threads.
//!
//! Enqueue-to-completion intervals of a FIFO queue overlap without nesting (one sync proves
//! many operations), and slices on a Perfetto track must nest, so a queue's operations are laid
//! on lanes (child tracks of the queue's track): each on the first lane whose last slice ended
//! at or before its start. The lane is taken when the operation is enqueued and held until it
//! is proven done, so at most [`MAX_LANES`] operations per queue are held here at any time; an
//! operation that finds every lane taken is not drawn, only counted. Memory is bounded by the
//! number of queues, not by the log.
//!
//! The enqueuing call and its device slice share a link value of a key of their own
//! ([`Names::link`]): the Perfetto writer joins them with a flow in every trace file.

use std::io;

use rustc_hash::FxHashMap;

use crate::calls::call::{Call, Strings, V};
use crate::calls::completion::{Completion, Done, Seen};
use crate::calls::sources::PID_MASK;
use crate::calls::CallSink;
use crate::pack::completion::CompletionSpec;

/// Lanes per queue; operations beyond them at one time are counted, not drawn.
pub const MAX_LANES: usize = 16;

/// The device lanes' thread ids: `LANE_TID | n`, the n-th lane of the conversion. Linux's ids
/// are below 2^22 and several logs' are numbered `(i + 1) << 22 | id` (crate::calls::sources),
/// so this prefix (1023 << 22) is no real thread's, with up to [`MAX_LOGS`] logs.
pub const LANE_TID: u32 = 0x3ff << 22;
/// Logs converted together beyond which the device tracks are left out (their ids would meet
/// the lanes').
pub const MAX_LOGS: usize = 1022;
/// Device slices' sequence numbers: above every real call's (crate::calls::collect counts
/// those from 1).
const SEQ: u64 = 1 << 63;
/// The flows from enqueuing calls to their device slices: `FLOW_BASE | token`, above the ids
/// of the link keys' flows (crate::convert::perfetto::flows counts those from 1).
pub const FLOW_BASE: u64 = 1 << 63;
/// The arguments of an enqueuing call that name its code (a kernel, a host callback): once
/// symbolized, the device slice is named by it too.
const CODE_ARGS: [&str; 6] = ["function", "func", "kernel", "f", "callback", "fn"];
/// The link key joining an enqueuing call and its device slice: no pack's (packs name keys
/// with identifiers).
const LINK_KEY: &str = "(device op)";

/// Whether `c` is a device slice made here, not a call of the program.
pub fn is_device(c: &Call) -> bool {
    c.seq & SEQ != 0
}

/// Whether `tid` is a device lane's ([`LANE_TID`]), not a thread of the program.
pub fn is_lane(tid: u32) -> bool {
    tid & LANE_TID == LANE_TID
}

/// The names device slices use, as string ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Names {
    /// The link key of the flow from the enqueuing call.
    pub link: u32,
    /// Annotations: the enqueuing call's thread, its code (symbolized), the proving call.
    pub thread: u32,
    pub function: u32,
    pub completed_by: u32,
    /// `state = pending`: not proven done when the log ended.
    pub state: u32,
    pub pending: u32,
}

impl Names {
    pub fn intern(s: &mut Strings) -> Names {
        Names {
            link: s.id(LINK_KEY),
            thread: s.id("thread"),
            function: s.id("function"),
            completed_by: s.id("completed_by"),
            state: s.id("state"),
            pending: s.id("pending"),
        }
    }
}

/// What was drawn, for log.txt's header and convert's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Operations drawn, proven done.
    pub completed: u64,
    /// Operations drawn to the log's end, never proven done.
    pub pending: u64,
    /// Operations not drawn: every lane of their queue was taken.
    pub not_drawn: u64,
    /// Queues with a track.
    pub streams: u64,
}

impl DeviceSummary {
    pub fn is_empty(&self) -> bool {
        *self == DeviceSummary::default()
    }
}

/// `23 operations on 5 streams, 6 proven done, 17 pending at the end[; 4 more not drawn ...]`:
/// the same words in log.txt's header and convert's summary.
impl std::fmt::Display for DeviceSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operations on {} streams, {} proven done, {} pending at the end",
            self.completed + self.pending,
            self.streams,
            self.completed,
            self.pending
        )?;
        if self.not_drawn > 0 {
            write!(
                f,
                "; {} more not drawn (over {MAX_LANES} at once on one stream)",
                self.not_drawn
            )?;
        }
        Ok(())
    }
}

struct Lane {
    /// Its thread id (`LANE_TID | n`).
    tid: u32,
    /// When its last slice ended; None: taken by work not yet proven done.
    free_at: Option<u64>,
}

/// An operation drawn, until it is proven done.
struct Held {
    queue: (u32, u64),
    lane: usize,
    tid: u32,
    start: u64,
    name: u32,
    /// The enqueuing call's thread.
    thread: u32,
    function: Option<u32>,
}

pub struct Device {
    completion: Completion,
    /// The packs with completion rules.
    with_rules: Vec<String>,
    /// Interned at the first log whose packs have completion rules.
    names: Option<Names>,
    code_args: Vec<u32>,
    /// The current log's packs have completion rules.
    active: bool,
    /// Lanes of each (pid, queue).
    queues: FxHashMap<(u32, u64), Vec<Lane>>,
    held: FxHashMap<u64, Held>,
    /// Each lane's (pid, queue, index), by its thread id's low bits.
    lanes: Vec<(u32, u64, u8)>,
    next_seq: u64,
    done: Vec<Done>,
    scratch: Call,
    out: Call,
    pub summary: DeviceSummary,
}

impl Device {
    /// For the packs' `[completion]` sections (pack, spec); None when none has rules.
    pub fn new(specs: Vec<(String, CompletionSpec)>) -> Option<Device> {
        let with_rules: Vec<String> = specs
            .iter()
            .filter(|(_, s)| !s.rules.is_empty())
            .map(|(p, _)| p.clone())
            .collect();
        if with_rules.is_empty() {
            return None;
        }
        Some(Device {
            completion: Completion::new(specs).with_marks(),
            with_rules,
            names: None,
            code_args: Vec::new(),
            active: false,
            queues: FxHashMap::default(),
            held: FxHashMap::default(),
            lanes: Vec::new(),
            next_seq: 0,
            done: Vec::new(),
            scratch: Call::default(),
            out: Call::default(),
            summary: DeviceSummary::default(),
        })
    }

    /// The calls that follow are of log `log`, written with `packs` (None: unknown), their
    /// names in `strings`. Logs of packs without completion rules get no device tracks and no
    /// new strings: they convert as they did before.
    pub fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
        self.active = packs.is_none_or(|ps| self.with_rules.iter().any(|p| ps.contains(p)));
        if !self.active {
            return;
        }
        if self.names.is_none() {
            self.names = Some(Names::intern(strings));
            self.code_args = CODE_ARGS.iter().map(|a| strings.id(a)).collect();
        }
        self.completion.start_log(log, strings, packs);
    }

    /// The names device slices use, if any log had completion rules.
    pub fn names(&self) -> Option<Names> {
        self.names
    }

    /// Each lane's (pid, queue, index), by its thread id's low bits (`tid & !LANE_TID`).
    pub fn lanes(&self) -> &[(u32, u64, u8)] {
        &self.lanes
    }

    /// One finished call of the program, handed on to `out` (with the device link when its
    /// work is drawn), followed by the device slices of the work it proved done.
    pub fn see<S: CallSink>(&mut self, c: &Call, strings: &Strings, out: &mut S) -> io::Result<()> {
        let Some(names) = self.names.filter(|_| self.active) else {
            return out.see(c, strings);
        };
        let lane = match (self.completion.enqueue_queue(c), c.end) {
            // (An instant has no slice for the flow to leave from.)
            (Some(q), Some(end)) if !c.instant => Some((q, self.free_lane(c.pid, q, end))),
            _ => None,
        };
        let seen = self.completion.see(c, matches!(lane, Some((_, Some(_)))));
        match (seen, lane) {
            (Seen::Enqueued { token, queue }, Some((q, Some(k)))) if token != 0 && queue == q => {
                self.hold(c, token, q, k);
                self.scratch.clone_from(c);
                self.scratch.links.push((names.link, token));
                out.see(&self.scratch, strings)?;
            }
            (Seen::Enqueued { .. }, _) => {
                self.summary.not_drawn += 1;
                out.see(c, strings)?;
            }
            _ => out.see(c, strings)?,
        }
        let mut done = std::mem::take(&mut self.done);
        done.extend(self.completion.take_done());
        let r = done.drain(..).try_for_each(|d| match d.at {
            Some(at) => self.emit(d.token, at, Some(d.by), names, strings, out),
            // Let go unproven (too much work held on its queue, which with a few lanes per
            // queue does not happen): it stays, and is drawn pending at the end.
            None => Ok(()),
        });
        self.done = done;
        r
    }

    /// The log (or the last of several) ended at `t_end`: the work never proven done is drawn
    /// to there, pending.
    pub fn finish<S: CallSink>(
        &mut self,
        t_end: u64,
        strings: &Strings,
        out: &mut S,
    ) -> io::Result<()> {
        let Some(names) = self.names else {
            return Ok(());
        };
        let mut left: Vec<u64> = self.held.keys().copied().collect();
        left.sort_unstable();
        for token in left {
            self.emit(token, t_end, None, names, strings, out)?;
        }
        Ok(())
    }

    /// The lane of queue `q` of `pid` that work enqueued at `start` would take: the first
    /// free since before `start`, or a new one; None when all [`MAX_LANES`] are taken.
    fn free_lane(&mut self, pid: u32, q: u64, start: u64) -> Option<usize> {
        let lanes = self.queues.entry((pid, q)).or_default();
        if let Some(k) = lanes
            .iter()
            .position(|l| l.free_at.is_some_and(|t| t <= start))
        {
            return Some(k);
        }
        (lanes.len() < MAX_LANES && self.lanes.len() < (1 << 22)).then_some(lanes.len())
    }

    fn hold(&mut self, c: &Call, token: u64, q: u64, k: usize) {
        let end = c.end.expect("an enqueue that returned");
        let lanes = self.queues.entry((c.pid, q)).or_default();
        if k == lanes.len() {
            if k == 0 {
                self.summary.streams += 1;
            }
            let tid = LANE_TID | self.lanes.len() as u32;
            self.lanes.push((c.pid, q, k as u8));
            lanes.push(Lane { tid, free_at: None });
        }
        lanes[k].free_at = None;
        let function = c.args.iter().find_map(|&(n, v)| match v {
            V::Str(s) if self.code_args.contains(&n) => Some(s),
            _ => None,
        });
        self.held.insert(
            token,
            Held {
                queue: (c.pid, q),
                lane: k,
                tid: lanes[k].tid,
                // A call of no duration would sort after its own slice: a nanosecond later.
                start: if c.start == Some(end) { end + 1 } else { end },
                name: c.name,
                thread: c.tid,
                function,
            },
        );
    }

    /// The device slice of work `token`, done at `end` (proven by call `by`), or pending.
    fn emit<S: CallSink>(
        &mut self,
        token: u64,
        end: u64,
        by: Option<u32>,
        names: Names,
        strings: &Strings,
        out: &mut S,
    ) -> io::Result<()> {
        let Some(h) = self.held.remove(&token) else {
            return Ok(());
        };
        let end = end.max(h.start);
        if let Some(lanes) = self.queues.get_mut(&h.queue) {
            lanes[h.lane].free_at = Some(end);
        }
        let o = &mut self.out;
        o.start = Some(h.start);
        o.end = Some(end);
        o.seq = SEQ | self.next_seq;
        self.next_seq += 1;
        o.pid = h.queue.0;
        o.tid = h.tid;
        o.name = h.name;
        o.instant = false;
        o.args.clear();
        o.args
            .push((names.thread, V::UInt(u64::from(h.thread & PID_MASK))));
        if let Some(f) = h.function {
            o.args.push((names.function, V::Str(f)));
        }
        o.results.clear();
        match by {
            Some(by) => {
                self.summary.completed += 1;
                o.results.push((names.completed_by, V::Str(by)));
            }
            None => {
                self.summary.pending += 1;
                o.results.push((names.state, V::Str(names.pending)));
            }
        }
        o.links.clear();
        o.links.push((names.link, token));
        out.see(o, strings)
    }
}

/// The function of a symbolized code address (`name+0xoff at file:line (0xaddr)`, as
/// crate::calls::collect writes it): `name`.
pub fn short_symbol(s: &str) -> &str {
    let s = s.rfind(" (0x").map_or(s, |i| &s[..i]);
    let s = s.rfind(" at ").map_or(s, |i| &s[..i]);
    s.rfind("+0x").map_or(s, |i| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::completion::{Does, Rule};

    fn rule(does: Does, calls: &[&str], queue: Option<&str>, marker: Option<&str>) -> Rule {
        Rule::new(does, calls, queue, marker)
    }

    fn specs() -> Vec<(String, CompletionSpec)> {
        vec![(
            "hip".into(),
            CompletionSpec {
                done: vec![0],
                not_ready: vec![600],
                rules: vec![
                    rule(Does::Enqueue, &["launch"], Some("stream"), None),
                    rule(Does::Record, &["record"], Some("stream"), Some("event")),
                    rule(Does::Wait, &["ssync"], Some("stream"), None),
                ],
                ..CompletionSpec::default()
            },
        )]
    }

    /// The calls handed on, in order.
    #[derive(Default)]
    struct Out(Vec<Call>);

    impl CallSink for Out {
        fn see(&mut self, c: &Call, _: &Strings) -> io::Result<()> {
            self.0.push(c.clone());
            Ok(())
        }
    }

    struct Log {
        d: Device,
        s: Strings,
        out: Out,
        t: u64,
        /// Enqueuing calls handed on with the device link, and their slices.
        linked: (usize, usize),
    }

    impl Log {
        fn new() -> Log {
            let mut d = Device::new(specs()).unwrap();
            let mut s = Strings::default();
            d.start_log(0, &mut s, Some(&["hip".to_string()]));
            Log {
                d,
                s,
                out: Out::default(),
                t: 0,
                linked: (0, 0),
            }
        }

        /// A call lasting 10 ns from 100 ns after the last one.
        fn call(&mut self, name: &str, stream: u64, ret: i64) {
            self.t += 100;
            let c = Call {
                start: Some(self.t),
                end: Some(self.t + 10),
                seq: self.t,
                pid: 1,
                tid: 2,
                name: self.s.id(name),
                args: vec![
                    (self.s.id("stream"), V::Hex(stream)),
                    (self.s.id("event"), V::Hex(0xe)),
                ],
                results: vec![(self.s.id("ret"), V::Int(ret))],
                ..Call::default()
            };
            self.d.see(&c, &self.s, &mut self.out).unwrap();
        }

        /// The device slices handed on since the last look: (lane number, start, end,
        /// pending).
        fn slices(&mut self) -> Vec<(u32, u64, u64, bool)> {
            let names = self.d.names().unwrap();
            for c in &self.out.0 {
                if c.links.iter().any(|l| l.0 == names.link) {
                    if is_device(c) {
                        self.linked.1 += 1;
                    } else {
                        self.linked.0 += 1;
                    }
                }
            }
            self.out
                .0
                .drain(..)
                .filter(is_device)
                .map(|c| {
                    (
                        c.tid & !LANE_TID,
                        c.start.unwrap(),
                        c.end.unwrap(),
                        c.results[0].0 == names.state,
                    )
                })
                .collect()
        }
    }

    #[test]
    fn work_takes_the_first_lane_free_since_its_enqueue_up_to_the_cap() {
        let mut l = Log::new();
        // Three operations proven by one sync: they overlap without nesting, three lanes.
        l.call("launch", 7, 0); // 100..110
        l.call("record", 7, 0); // 200..210
        l.call("launch", 7, 0); // 300..310
        l.call("ssync", 7, 0); // 400..410
        assert_eq!(
            l.slices(),
            vec![
                (0, 110, 410, false),
                (1, 210, 410, false),
                (2, 310, 410, false)
            ]
        );
        // Lane 0 is free again from 410; a failed launch takes nothing.
        l.call("launch", 7, 1);
        l.call("launch", 7, 0); // 600..610
        l.call("ssync", 7, 0); // 700..710
        assert_eq!(l.slices(), vec![(0, 610, 710, false)]);
        // Twenty never proven on another queue: sixteen lanes, four not drawn.
        for _ in 0..20 {
            l.call("launch", 8, 0);
        }
        assert!(l.slices().is_empty(), "nothing proven yet");
        l.d.finish(10_000, &l.s, &mut l.out).unwrap();
        let pending = l.slices();
        assert_eq!(pending.len(), MAX_LANES);
        let lanes: Vec<u32> = pending.iter().map(|s| s.0).collect();
        assert_eq!(lanes, (3..3 + MAX_LANES as u32).collect::<Vec<_>>());
        assert!(pending.iter().all(|s| s.2 == 10_000 && s.3));
        assert_eq!(
            l.d.summary,
            DeviceSummary {
                completed: 4,
                pending: 16,
                not_drawn: 4,
                streams: 2
            }
        );
        assert_eq!(l.d.lanes()[3], (1, 8, 0));
        // Every enqueuing call drawn carries the link its slice has: 4 + 16 of them.
        assert_eq!(l.linked, (20, 20));
        assert!(l.d.held.is_empty());
    }

    #[test]
    fn symbols_are_shortened_to_their_function() {
        assert_eq!(short_symbol("vec_add+0x0 (0x401136)"), "vec_add");
        assert_eq!(
            short_symbol("void k<int>(int*)+0x10 at k.cpp:3 (0x401136)"),
            "void k<int>(int*)"
        );
        assert_eq!(short_symbol("plain"), "plain");
    }
}
