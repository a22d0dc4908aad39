//! The report's reading: it sees each finished call of each log once (crate::calls' call
//! model, from the same reading pass) and keeps what a hang needs, in memory that grows with
//! groups and members, not with the log:
//! - per group (a communicator, by its identity across processes) and member (a rank): the
//!   highest operation it entered, whether it returned, and the process it is in;
//! - per group and operation number not yet seen on every member: the distinct signatures
//!   (call and matched fields) and which members had each: a finished operation with two
//!   signatures is a mismatch, kept; one with one is forgotten;
//! - per group and ordered pair of members: sends and receives (point to point);
//! - per process: its calls in flight when its log ended (of any pack), its queries that kept
//!   answering "not ready", and its last traced call;
//! - the completion of each operation's work on the device (crate::calls::completion): an
//!   operation that only enqueued is pending until a later call proves it done.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::calls::call::{Call, Strings, V};
use crate::calls::completion::{Completion, Seen};
use crate::calls::format::value;
use crate::calls::CallSink;
use crate::pack::completion::CompletionSpec;
use crate::pack::ReportSpec;

/// A process, across logs: (log index, pid).
pub type ProcKey = (u16, u32);

pub use crate::calls::sources::PID_MASK;

/// Where an operation of one member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Its call had not returned when the log ended (a call that blocks, or a full queue).
    InCall,
    /// Its call returned having enqueued the work, which no later call proved done.
    Pending,
    /// Proven done: at this time, by this call (`hipStreamSynchronize`); "" for a call with
    /// no completion rules, done when it returned.
    Done { at: u64, by: String },
    /// Done on another member: a collective completes on all its members together.
    DoneByPeers,
    /// Its call returned an error: nothing was enqueued.
    Failed,
}

impl State {
    /// Not done: a member here is waiting for it.
    pub fn waiting(&self) -> bool {
        matches!(self, State::InCall | State::Pending)
    }
}

/// One operation of one member.
#[derive(Clone, Debug)]
pub struct Op {
    pub order: u64,
    /// The call, with its matched fields, peer and stream (`ncclAllReduce(count=1024, ...)`).
    pub desc: String,
    pub start: Option<u64>,
    /// None: in flight when its log ended.
    pub end: Option<u64>,
    pub tid: u32,
    pub state: State,
    /// Where it was called from (its `caller` field, a return address; 0: not recorded),
    /// named by crate::report::sites.
    pub site: u64,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub proc: ProcKey,
    /// The highest operation it entered.
    pub last: Op,
    /// Its operations enqueued and not proven done (bounded: the oldest are let go), by order:
    /// when each was enqueued, its description and its call site (as [`Op::site`]).
    pub pending: BTreeMap<u64, (Option<u64>, String, u64)>,
    /// Its operations proven done, by order, only while some member may still need them
    /// (kept from the oldest pending operation of the group on).
    pub done: BTreeMap<u64, (u64, String)>,
}

/// The members at one operation number, by signature.
#[derive(Clone, Debug, Default)]
pub struct OpAgg {
    /// (signature, its description, the members that had it).
    pub sigs: Vec<(u64, String, Vec<u32>)>,
    /// Each signature's call name and matched fields (name, value), to class a disagreement.
    pub fields: Vec<(String, Vec<(String, i64)>)>,
    pub count: u32,
}

/// Operation number `order` had members disagree.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub order: u64,
    pub sigs: Vec<(String, Vec<u32>)>,
    /// What differs, as PyTorch's flight-recorder analyzer classes it: "collective type"
    /// (another call), else the pack's class of each differing field ("size", "dtype").
    pub classes: Vec<String>,
}

/// Point to point, from one member to another.
#[derive(Clone, Debug, Default)]
pub struct P2p {
    pub sends: u64,
    pub recvs: u64,
    /// The last send (by the sender) and receive (by the receiver), if the logs show them,
    /// with the processes that made them.
    pub last_send: Option<(Op, ProcKey)>,
    pub last_recv: Option<(Op, ProcKey)>,
    /// The completion tokens of the last send and receive, while pending.
    send_token: u64,
    recv_token: u64,
}

#[derive(Clone, Debug)]
pub struct Group {
    /// The declaring pack's spec (index into the gather's specs).
    pub spec: usize,
    pub id: u64,
    pub size: Option<u32>,
    pub members: BTreeMap<u32, Member>,
    /// Each member's process, from any of its calls (point to point too).
    pub procs: BTreeMap<u32, ProcKey>,
    pub ops: BTreeMap<u64, OpAgg>,
    pub mismatches: Vec<Mismatch>,
    /// (from, to) -> counts.
    pub p2p: BTreeMap<(u32, u32), P2p>,
    /// The longest an operation took from its enqueue to its proven completion (ns): what
    /// "normal" is on this group, to tell a hang from work in progress.
    pub slowest_done: Option<u64>,
}

/// A query that kept answering "not ready" until its log ended.
#[derive(Clone, Debug)]
pub struct Polling {
    pub tid: u32,
    /// The query and what it asks of (`hipEventQuery(event=0x...)`).
    pub desc: String,
    pub answers: u64,
    pub since: u64,
    pub last: u64,
}

/// A process's call in flight when its log ended.
#[derive(Clone, Debug)]
pub struct OpenCall {
    pub tid: u32,
    pub desc: String,
    pub start: Option<u64>,
    /// The group operation it is, if it is one: (group key, group id, member, order).
    pub group_op: Option<(usize, u64, u32, u64)>,
}

#[derive(Clone, Debug, Default)]
pub struct Proc {
    pub host: String,
    pub pid: u32,
    pub comm: String,
    pub open: Vec<OpenCall>,
    pub polling: Vec<Polling>,
    /// Its last traced call that returned (any pack): when, and what.
    pub last_call: Option<(u64, String)>,
    /// Each thread's last traced call that returned: when, and what.
    pub last_by_tid: BTreeMap<u32, (u64, String)>,
    /// It exited while traced: when, its exit status and the signal that ended it (0: none).
    pub exited: Option<(u64, i64, i64)>,

    /// Its pid as the calls carry it (numbered apart when several logs are converted).
    raw_pid: u32,
}

/// The ids of a spec's names in one log's string table.
struct SpecIds {
    /// The spec's pack wrote the current log: only then do its calls read as groups.
    in_log: bool,
    group: u32,
    member: u32,
    size: Option<u32>,
    order: u32,
    matched: Vec<u32>,
    peer: Option<u32>,
    stream: u32,
    /// The call site field (crate::pack::ArgFrom::ReturnAddress), by the name packs give it.
    caller: u32,
    sends: Vec<u32>,
    receives: Vec<u32>,
}

/// At most this many mismatches are kept per group (the rest are counted).
const KEEP_MISMATCHES: usize = 8;
/// Operations held per group when its size is unknown: past it the oldest are let go.
const MAX_OPEN_OPS: usize = 4096;

pub struct Gather {
    pub specs: Vec<(String, ReportSpec)>,
    ids: Vec<SpecIds>,
    log: u16,
    pub groups: BTreeMap<(usize, u64), Group>,
    pub procs: BTreeMap<ProcKey, Proc>,
    /// Mismatches found beyond those kept, per group.
    pub more_mismatches: FxHashMap<(usize, u64), u64>,
    /// Calls seen that belong to a group.
    pub group_calls: u64,
    /// The completion of the work operations enqueue.
    pub completion: Completion,
    /// The operations whose completion is awaited, by token: (spec, group, member, order).
    tokens: FxHashMap<u64, (usize, u64, u32, u64)>,
    /// The completions the last call proved, taken into the same buffer every call (a fresh
    /// vector per call was 5% of a conversion's CPU, on its busiest thread).
    done: Vec<crate::calls::completion::Done>,
    /// Operations let go unproven (too many pending on one member).
    pub let_go: u64,
    /// The current log's threads' last calls that returned: (pid, tid) -> (end, name id).
    last_calls: FxHashMap<(u32, u32), (u64, u32)>,
    /// The name id of a process's exit (crate::decode::PROCESS_EXIT) in the current log.
    exit_id: u32,
    /// The stacks record took beside the logs (crate::report::stacks; empty without them).
    pub stacks: super::stacks::Stacks,
    /// The call sites of the operations the report names (set after the analysis).
    pub sites: super::sites::Sites,
}

/// Completions held per member before the group's are trimmed (a pass over its members).
const TRIM_DONE_AT: usize = 64;
/// Pending operations held per member: past it the oldest are let go (and said).
const MAX_PENDING: usize = 4096;

impl Gather {
    /// For the packs' `[report]` specs, as (pack, spec).
    pub fn new(
        specs: Vec<(String, ReportSpec)>,
        completion: Vec<(String, CompletionSpec)>,
    ) -> Gather {
        Gather {
            specs,
            ids: Vec::new(),
            log: 0,
            groups: BTreeMap::new(),
            procs: BTreeMap::new(),
            more_mismatches: FxHashMap::default(),
            group_calls: 0,
            completion: Completion::new(completion),
            tokens: FxHashMap::default(),
            done: Vec::new(),
            let_go: 0,
            last_calls: FxHashMap::default(),
            exit_id: u32::MAX,
            stacks: Default::default(),
            sites: Default::default(),
        }
    }

    /// The calls that follow are of log `log`, whose names are interned in `strings`, written
    /// with `packs` (None: unknown, every spec applies). Only those packs' specs read its
    /// calls: two packs may declare the same fields (rccl and nccl: the NCCL API), and a
    /// call is its own pack's.
    pub fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
        self.log = log;
        self.completion.start_log(log, strings, packs);
        self.exit_id = strings.id(crate::decode::PROCESS_EXIT);
        self.ids = self
            .specs
            .iter()
            .map(|(pack, s)| SpecIds {
                in_log: !matches!(packs, Some(p) if !p.contains(pack)),
                group: strings.id(&s.group),
                member: strings.id(&s.member),
                size: s.size.as_deref().map(|n| strings.id(n)),
                order: strings.id(&s.order),
                matched: s.matched.iter().map(|n| strings.id(n)).collect(),
                peer: s.peer.as_deref().map(|n| strings.id(n)),
                stream: strings.id("stream"),
                caller: strings.id("caller"),
                sends: s.sends.iter().map(|n| strings.id(n)).collect(),
                receives: s.receives.iter().map(|n| strings.id(n)).collect(),
            })
            .collect();
    }

    /// Names the processes of the current log: its host, and each thread's process name.
    pub fn name_procs(
        &mut self,
        host: &str,
        threads: &std::collections::HashMap<u32, (u32, String)>,
    ) {
        for (&tid, (pid, comm)) in threads {
            let key = self.proc_key(*pid);
            let p = self.procs.entry(key).or_default();
            p.host = host.to_string();
            p.pid = key.1;
            if tid & PID_MASK == key.1 || p.comm.is_empty() {
                p.comm = comm.clone();
            }
        }
    }

    /// The process of `pid`: of the current log, or, above 2^22, of the log its number says
    /// (crate::calls::sources numbers several logs' processes apart).
    fn proc_key(&self, pid: u32) -> ProcKey {
        if pid > PID_MASK {
            (((pid >> 22) - 1) as u16, pid & PID_MASK)
        } else {
            (self.log, pid)
        }
    }

    /// The group call `c` is, if it is one: (spec, group id, member, order). A call with a
    /// member and no order (the group's creation) says which process the member is in.
    fn group_call(&self, c: &Call) -> Option<(usize, u64, u32, Option<u64>)> {
        for (i, ids) in self.ids.iter().enumerate().filter(|(_, ids)| ids.in_log) {
            let Some(&(_, gid)) = c.links.iter().find(|l| l.0 == ids.group) else {
                continue;
            };
            let member = c.value(ids.member).and_then(V::as_i64)?;
            let order = c
                .value(ids.order)
                .and_then(V::as_i64)
                .and_then(|o| u64::try_from(o).ok());
            return Some((i, gid, u32::try_from(member).ok()?, order));
        }
        None
    }

    /// The group operation `c` is, if it is one: (spec, group id, member, order).
    fn group_op(&self, c: &Call) -> Option<(usize, u64, u32, u64)> {
        let (spec, gid, member, order) = self.group_call(c)?;
        Some((spec, gid, member, order?))
    }

    /// `name(matched=..., peer=...)` and the stream, as the report shows an operation.
    fn describe(&self, c: &Call, spec: usize, strings: &Strings) -> String {
        let ids = &self.ids[spec];
        let mut s = String::from(strings.get(c.name));
        s.push('(');
        let mut first = true;
        for &id in ids.matched.iter().chain(ids.peer.iter()) {
            if let Some(v) = c.value(id) {
                if !first {
                    s.push_str(", ");
                }
                first = false;
                s.push_str(strings.get(id));
                s.push('=');
                value(&mut s, v, strings);
            }
        }
        s.push(')');
        if let Some(&(_, st)) = c.links.iter().find(|l| l.0 == ids.stream) {
            // A special handle by its pack's name (`hipStreamPerThread(2)`), any other in hex.
            match c.value(ids.stream) {
                Some(v @ V::Enum { raw, .. }) if raw as u64 == st => {
                    s.push_str(" on stream ");
                    value(&mut s, v, strings);
                }
                _ => s.push_str(&format!(" on stream {st:#x}")),
            }
        }
        s
    }

    /// One finished call (or, at the end, one in flight) of the current log.
    fn see_call(&mut self, c: &Call, strings: &Strings) {
        let proc = self.proc_key(c.pid);
        if c.name == self.exit_id && c.instant {
            let int = |n: &str| {
                c.args
                    .iter()
                    .find(|a| strings.get(a.0) == n)
                    .and_then(|a| a.1.as_i64())
                    .unwrap_or(0)
            };
            let p = self.procs.entry(proc).or_default();
            p.exited = Some((c.start.unwrap_or(0), int("status"), int("signal")));
            return;
        }
        let group = self.group_call(c);
        // Every call is seen by the completion model: enqueues on any pack's queues, and the
        // syncs and queries (of the GPU runtime's pack) that prove them done.
        let track = matches!(group, Some((_, _, _, Some(_)))) && c.end.is_some();
        let seen = self.completion.see(c, track);
        self.settle_done(strings);
        if let Some(end) = c.end {
            // One hash look-up per call: each thread's last call, given to its process at
            // the log's end.
            let t = self
                .last_calls
                .entry((c.pid, c.tid))
                .or_insert((end, c.name));
            if end >= t.0 {
                *t = (end, c.name);
            }
        }
        let Some((spec, gid, member, order)) = group else {
            return;
        };
        self.group_calls += 1;
        let ids = &self.ids[spec];
        let size = ids
            .size
            .and_then(|s| c.value(s))
            .and_then(V::as_i64)
            .and_then(|n| u32::try_from(n).ok());
        let Some(order) = order else {
            // The group's creation (or a query): who the member is, not an operation.
            let g = Self::group(&mut self.groups, spec, gid);
            g.procs.insert(member, proc);
            if size.is_some() {
                g.size = size;
            }
            return;
        };
        let peer = ids
            .peer
            .and_then(|p| c.value(p))
            .and_then(V::as_i64)
            .and_then(|n| u32::try_from(n).ok());
        let is_send = ids.sends.contains(&c.name);
        let is_recv = ids.receives.contains(&c.name);
        // The signature: the call and its matched fields (not its buffers or stream).
        let mut h = crate::hash::fnv1a64(strings.get(c.name).as_bytes());
        for &m in &ids.matched {
            if let Some(v) = c.value(m).and_then(V::as_i64) {
                h = crate::hash::fnv1a64(&[h.to_le_bytes(), v.to_le_bytes()].concat());
            }
        }
        let (state, token) = match (c.end, seen) {
            (None, _) => (State::InCall, 0),
            (Some(_), Seen::Enqueued { token, .. }) => (State::Pending, token),
            (Some(_), Seen::Failed) => (State::Failed, 0),
            // No completion rules for this call: it did its work before it returned.
            (Some(e), _) => (
                State::Done {
                    at: e,
                    by: String::new(),
                },
                0,
            ),
        };
        let op = Op {
            order,
            desc: String::new(),
            start: c.start,
            end: c.end,
            tid: c.tid,
            state,
            site: match c.value(ids.caller) {
                Some(V::Code(a)) => a,
                _ => 0,
            },
        };
        let need_desc = {
            let g = self.groups.get(&(spec, gid));
            let newer = g
                .and_then(|g| g.members.get(&member))
                .is_none_or(|m| order >= m.last.order);
            let new_sig = g
                .and_then(|g| g.ops.get(&order))
                .is_none_or(|a| !a.sigs.iter().any(|s| s.0 == h));
            newer || new_sig || is_send || is_recv || token != 0
        };
        let desc = if need_desc {
            self.describe(c, spec, strings)
        } else {
            String::new()
        };
        // Each signature's fields by name, to class a disagreement: only for a new one.
        let fields = |ids: &SpecIds| -> Vec<(String, i64)> {
            ids.matched
                .iter()
                .filter_map(|&m| {
                    c.value(m)
                        .and_then(V::as_i64)
                        .map(|v| (strings.get(m).to_string(), v))
                })
                .collect()
        };
        let g = Self::group(&mut self.groups, spec, gid);
        if size.is_some() {
            g.size = size;
        }
        g.procs.insert(member, proc);
        // Point-to-point calls pair with their peer's, one by one: not group-wide operations.
        if let (Some(to), true) = (peer, is_send || is_recv) {
            let (key, slot) = if is_send {
                ((member, to), 0)
            } else {
                ((to, member), 1)
            };
            let p = g.p2p.entry(key).or_default();
            let last = Some((Op { desc, ..op }, proc));
            if slot == 0 {
                p.sends += 1;
                p.last_send = last;
                p.send_token = token;
            } else {
                p.recvs += 1;
                p.last_recv = last;
                p.recv_token = token;
            }
            if token != 0 {
                self.tokens.insert(token, (spec, gid, u32::MAX, order));
            }
            return;
        }
        let m = g.members.entry(member).or_insert_with(|| Member {
            proc,
            last: op.clone(),
            pending: BTreeMap::new(),
            done: BTreeMap::new(),
        });
        m.proc = proc;
        if order >= m.last.order {
            m.last = Op {
                desc: desc.clone(),
                ..op.clone()
            };
        }
        match &op.state {
            State::Pending => {
                m.pending.insert(order, (c.end, desc.clone(), op.site));
                self.tokens.insert(token, (spec, gid, member, order));
                if m.pending.len() > MAX_PENDING {
                    m.pending.pop_first();
                    self.let_go += 1;
                }
            }
            State::Done { at, by } => {
                m.pending.remove(&order);
                m.done.insert(order, (*at, by.clone()));
            }
            _ => {
                m.pending.remove(&order);
            }
        }
        if m.done.len() > TRIM_DONE_AT {
            Self::trim_done(g);
        }
        let agg = g.ops.entry(order).or_default();
        agg.count += 1;
        match agg.sigs.iter_mut().find(|s| s.0 == h) {
            Some(s) => s.2.push(member),
            None => {
                agg.sigs.push((h, desc, vec![member]));
                agg.fields
                    .push((strings.get(c.name).to_string(), fields(&self.ids[spec])));
            }
        }
        let whole = g.size.is_some_and(|n| agg.count >= n);
        if whole {
            let agg = g.ops.remove(&order).expect("just seen");
            Self::settle(g, spec, &self.specs, order, agg, &mut self.more_mismatches);
        }
        if g.size.is_none() && g.ops.len() > MAX_OPEN_OPS {
            if let Some((&o, _)) = g.ops.iter().next() {
                let agg = g.ops.remove(&o).expect("present");
                Self::settle(g, spec, &self.specs, o, agg, &mut self.more_mismatches);
            }
        }
    }

    /// The group operation of a pending token: (spec, group, member, order).
    pub fn pending_op(&self, token: u64) -> Option<(usize, u64, u32, u64)> {
        self.tokens.get(&token).copied()
    }

    /// Takes the completions the last call proved: the operations they were leave pending.
    fn settle_done(&mut self, strings: &Strings) {
        let mut done = std::mem::take(&mut self.done);
        done.extend(self.completion.take_done());
        for d in done.drain(..) {
            let Some((spec, gid, member, order)) = self.tokens.remove(&d.token) else {
                continue;
            };
            let Some(g) = self.groups.get_mut(&(spec, gid)) else {
                continue;
            };
            let state = match d.at {
                Some(at) => State::Done {
                    at,
                    by: strings.get(d.by).to_string(),
                },
                None => {
                    self.let_go += 1;
                    State::Done {
                        at: 0,
                        by: "(let go unproven)".into(),
                    }
                }
            };
            if member == u32::MAX {
                for p in g.p2p.values_mut() {
                    for (tok, last) in [
                        (&mut p.send_token, &mut p.last_send),
                        (&mut p.recv_token, &mut p.last_recv),
                    ] {
                        if *tok == d.token {
                            *tok = 0;
                            if let Some((op, _)) = last {
                                op.state = state.clone();
                            }
                        }
                    }
                }
                continue;
            }
            let Some(m) = g.members.get_mut(&member) else {
                continue;
            };
            if let (Some(Some(enq)), Some(at)) = (m.pending.remove(&order).map(|p| p.0), d.at) {
                let took = at.saturating_sub(enq);
                g.slowest_done = Some(g.slowest_done.map_or(took, |s| s.max(took)));
            }
            if let State::Done { at, by } = &state {
                m.done.insert(order, (*at, by.clone()));
            }
            if m.last.order == order && m.last.state == State::Pending {
                m.last.state = state;
            }
            if m.done.len() > TRIM_DONE_AT {
                Self::trim_done(g);
            }
        }
        self.done = done;
    }

    /// Forgets the completions no member can need: those before every member's oldest
    /// pending (or last) operation.
    fn trim_done(g: &mut Group) {
        let floor = g
            .members
            .values()
            .map(|m| m.pending.keys().next().copied().unwrap_or(m.last.order))
            .min()
            .unwrap_or(0);
        for m in g.members.values_mut() {
            while m.done.first_key_value().is_some_and(|(&o, _)| o < floor) {
                m.done.pop_first();
            }
        }
    }

    fn group(groups: &mut BTreeMap<(usize, u64), Group>, spec: usize, gid: u64) -> &mut Group {
        groups.entry((spec, gid)).or_insert_with(|| Group {
            spec,
            id: gid,
            size: None,
            members: BTreeMap::new(),
            procs: BTreeMap::new(),
            ops: BTreeMap::new(),
            mismatches: Vec::new(),
            p2p: BTreeMap::new(),
            slowest_done: None,
        })
    }

    /// An operation every member has seen: a mismatch if they disagreed.
    fn settle(
        g: &mut Group,
        spec: usize,
        specs: &[(String, ReportSpec)],
        order: u64,
        agg: OpAgg,
        more: &mut FxHashMap<(usize, u64), u64>,
    ) {
        if agg.sigs.len() < 2 {
            return;
        }
        if g.mismatches.len() < KEEP_MISMATCHES {
            g.mismatches.push(mismatch(order, agg, &specs[spec].1));
        } else {
            *more.entry((g.spec, g.id)).or_default() += 1;
        }
    }

    /// The current log's calls in flight when it ended (any pack), after its finished calls.
    pub fn see_in_flight(&mut self, calls: &[Call], strings: &Strings) {
        for c in calls {
            let group_op = self.group_op(c);
            let desc = match group_op {
                Some((spec, ..)) => self.describe(c, spec, strings),
                None => {
                    let mut s = String::new();
                    crate::calls::format::call_text(&mut s, c, strings);
                    s
                }
            };
            let key = self.proc_key(c.pid);
            let p = self.procs.entry(key).or_default();
            p.pid = key.1;
            p.open.push(OpenCall {
                tid: c.tid,
                desc,
                start: c.start,
                group_op,
            });
        }
        // The current log's processes: their threads' last calls and their unanswered polls,
        // named while this log's strings are at hand.
        for ((pid, tid), (end, name)) in std::mem::take(&mut self.last_calls) {
            let key = self.proc_key(pid);
            let p = self.procs.entry(key).or_default();
            p.raw_pid = pid;
            let named = (end, strings.get(name).to_string());
            if p.last_call.as_ref().is_none_or(|l| end >= l.0) {
                p.last_call = Some(named.clone());
            }
            p.last_by_tid.insert(tid, named);
        }
        for p in self
            .procs
            .range_mut((self.log, 0)..=(self.log, u32::MAX))
            .map(|(_, p)| p)
        {
            for poll in self.completion.polls(p.raw_pid) {
                p.polling.push(Polling {
                    tid: poll.tid,
                    desc: if poll.object == u64::MAX {
                        strings.get(poll.call).to_string()
                    } else if let Some(t) = crate::calls::completion::per_thread_of(poll.object) {
                        format!(
                            "{}(the default stream of thread {})",
                            strings.get(poll.call),
                            t & PID_MASK
                        )
                    } else {
                        format!("{}({:#x})", strings.get(poll.call), poll.object)
                    },
                    answers: poll.answers,
                    since: poll.since,
                    last: poll.last,
                });
            }
        }
    }
}

/// Operation `order`'s disagreement, classed as PyTorch's flight-recorder analyzer classes
/// it: another call is a collective type mismatch; else each differing matched field's class.
pub fn mismatch(order: u64, agg: OpAgg, spec: &ReportSpec) -> Mismatch {
    let mut classes: Vec<String> = Vec::new();
    let mut add = |c: String| {
        if !classes.contains(&c) {
            classes.push(c);
        }
    };
    let first = &agg.fields[0];
    for other in &agg.fields[1..] {
        if other.0 != first.0 {
            add("collective type".into());
            continue;
        }
        for (name, v) in &first.1 {
            let theirs = other.1.iter().find(|f| f.0 == *name).map(|f| f.1);
            if theirs != Some(*v) {
                add(spec
                    .classes
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| name.clone()));
            }
        }
        for (name, _) in &other.1 {
            if !first.1.iter().any(|f| f.0 == *name) {
                add(spec
                    .classes
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| name.clone()));
            }
        }
    }
    Mismatch {
        order,
        sigs: agg.sigs.into_iter().map(|(_, d, m)| (d, m)).collect(),
        classes,
    }
}

impl CallSink for Gather {
    fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
        Gather::start_log(self, log, strings, packs);
    }
    fn see(&mut self, c: &Call, strings: &Strings) -> std::io::Result<()> {
        self.see_call(c, strings);
        Ok(())
    }
    fn see_in_flight(&mut self, calls: &[Call], strings: &Strings) {
        Gather::see_in_flight(self, calls, strings);
    }
}
