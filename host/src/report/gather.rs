//! The report's reading: it sees each finished call of each log once (crate::convert's call
//! model, from the same reading pass) and keeps what a hang needs, in memory that grows with
//! groups and members, not with the log:
//! - per group (a communicator, by its identity across processes) and member (a rank): the
//!   highest operation it entered, whether it returned, and the process it is in;
//! - per group and operation number not yet seen on every member: the distinct signatures
//!   (call and matched fields) and which members had each: a finished operation with two
//!   signatures is a mismatch, kept; one with one is forgotten;
//! - per group and ordered pair of members: sends and receives (point to point);
//! - per process: its calls in flight when its log ended (of any pack).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::convert::call::{Call, Strings, V};
use crate::convert::text::value;
use crate::pack::ReportSpec;

/// A process, across logs: (log index, pid).
pub type ProcKey = (u16, u32);

/// A pid as its log wrote it: `convert` of several logs numbers each log's processes apart
/// above Linux's largest pid (2^22), which the report takes off.
pub const PID_MASK: u32 = (1 << 22) - 1;

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
}

#[derive(Clone, Debug)]
pub struct Member {
    pub proc: ProcKey,
    /// The highest operation it entered.
    pub last: Op,
}

/// The members at one operation number, by signature.
#[derive(Clone, Debug, Default)]
pub struct OpAgg {
    /// (signature, its description, the members that had it).
    pub sigs: Vec<(u64, String, Vec<u32>)>,
    pub count: u32,
}

/// Operation number `order` had members disagree.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub order: u64,
    pub sigs: Vec<(String, Vec<u32>)>,
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
    sends: Vec<u32>,
    receives: Vec<u32>,
}

/// At most this many mismatches are kept per group (the rest are counted).
const KEEP_MISMATCHES: usize = 8;
/// Operations held per group when its size is unknown: past it the oldest are let go.
const MAX_OPEN_OPS: usize = 4096;

#[derive(Default)]
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
}

fn arg(c: &Call, id: u32) -> Option<V> {
    c.args
        .iter()
        .chain(c.results.iter())
        .find(|a| a.0 == id)
        .map(|a| a.1)
}

fn num(v: V) -> Option<i64> {
    match v {
        V::Int(i) => Some(i),
        V::UInt(u) | V::Hex(u) | V::Code(u) => Some(u as i64),
        V::Enum { raw, .. } => Some(raw),
        V::Bool(b) => Some(i64::from(b)),
        V::Str(_) | V::Float(_) => None,
    }
}

impl Gather {
    /// For the packs' `[report]` specs, as (pack, spec).
    pub fn new(specs: Vec<(String, ReportSpec)>) -> Gather {
        Gather {
            specs,
            ids: Vec::new(),
            log: 0,
            groups: BTreeMap::new(),
            procs: BTreeMap::new(),
            more_mismatches: FxHashMap::default(),
            group_calls: 0,
        }
    }

    /// The calls that follow are of log `log`, whose names are interned in `strings`, written
    /// with `packs` (None: unknown, every spec applies). Only those packs' specs read its
    /// calls: two packs may declare the same fields (rccl and nccl: the NCCL API), and a
    /// call is its own pack's.
    pub fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
        self.log = log;
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
    /// (crate::convert::sources numbers several logs' processes apart).
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
            let member = arg(c, ids.member).and_then(num)?;
            let order = arg(c, ids.order)
                .and_then(num)
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
            if let Some(v) = arg(c, id) {
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
            s.push_str(&format!(" on stream {st:#x}"));
        }
        s
    }

    /// One finished call (or, at the end, one in flight) of the current log.
    pub fn see(&mut self, c: &Call, strings: &Strings) {
        let Some((spec, gid, member, order)) = self.group_call(c) else {
            return;
        };
        self.group_calls += 1;
        let ids = &self.ids[spec];
        let size = ids
            .size
            .and_then(|s| arg(c, s))
            .and_then(num)
            .and_then(|n| u32::try_from(n).ok());
        let proc = self.proc_key(c.pid);
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
            .and_then(|p| arg(c, p))
            .and_then(num)
            .and_then(|n| u32::try_from(n).ok());
        let is_send = ids.sends.contains(&c.name);
        let is_recv = ids.receives.contains(&c.name);
        // The signature: the call and its matched fields (not its buffers or stream).
        let mut h = crate::hash::fnv1a64(strings.get(c.name).as_bytes());
        for &m in &ids.matched {
            if let Some(v) = arg(c, m).and_then(num) {
                h = crate::hash::fnv1a64(&[h.to_le_bytes(), v.to_le_bytes()].concat());
            }
        }
        let op = Op {
            order,
            desc: String::new(),
            start: c.start,
            end: c.end,
            tid: c.tid,
        };
        let need_desc = {
            let g = self.groups.get(&(spec, gid));
            let newer = g
                .and_then(|g| g.members.get(&member))
                .is_none_or(|m| order >= m.last.order);
            let new_sig = g
                .and_then(|g| g.ops.get(&order))
                .is_none_or(|a| !a.sigs.iter().any(|s| s.0 == h));
            newer || new_sig || is_send || is_recv
        };
        let desc = if need_desc {
            self.describe(c, spec, strings)
        } else {
            String::new()
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
            } else {
                p.recvs += 1;
                p.last_recv = last;
            }
            return;
        }
        let newer = g.members.get(&member).is_none_or(|m| order >= m.last.order);
        if newer {
            g.members.insert(
                member,
                Member {
                    proc,
                    last: Op {
                        desc: desc.clone(),
                        ..op.clone()
                    },
                },
            );
        }
        let agg = g.ops.entry(order).or_default();
        agg.count += 1;
        match agg.sigs.iter_mut().find(|s| s.0 == h) {
            Some(s) => s.2.push(member),
            None => agg.sigs.push((h, desc, vec![member])),
        }
        let whole = g.size.is_some_and(|n| agg.count >= n);
        if whole {
            let agg = g.ops.remove(&order).expect("just seen");
            Self::settle(g, order, agg, &mut self.more_mismatches);
        }
        if g.size.is_none() && g.ops.len() > MAX_OPEN_OPS {
            if let Some((&o, _)) = g.ops.iter().next() {
                let agg = g.ops.remove(&o).expect("present");
                Self::settle(g, o, agg, &mut self.more_mismatches);
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
        })
    }

    /// An operation every member has seen: a mismatch if they disagreed.
    fn settle(g: &mut Group, order: u64, agg: OpAgg, more: &mut FxHashMap<(usize, u64), u64>) {
        if agg.sigs.len() < 2 {
            return;
        }
        if g.mismatches.len() < KEEP_MISMATCHES {
            g.mismatches.push(Mismatch {
                order,
                sigs: agg.sigs.into_iter().map(|(_, d, m)| (d, m)).collect(),
            });
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
                    crate::convert::text::call_text(&mut s, c, strings);
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
    }
}
