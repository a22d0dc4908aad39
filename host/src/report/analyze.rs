//! From what the reading gathered to what the report says: per group, the operation where its
//! members diverge (who entered it and since when, who never did, what those do instead);
//! operations whose members disagree (mismatches); sends without their receives; and the
//! wait-for graph across groups, whose cycles are deadlocks.

use std::collections::{BTreeMap, BTreeSet};

use super::gather::{Gather, Group, Member, Mismatch, Op, OpenCall, ProcKey, State};

/// How a process waits, as its log ended.
#[derive(Clone, Debug, PartialEq)]
pub enum How {
    /// A call that had not returned (`hipMemcpy(...)`), and for how long (ns).
    Blocked {
        tid: u32,
        desc: String,
        waited: Option<u64>,
    },
    /// A query that kept answering "not ready": how many times, since how long ago (ns), on
    /// how many threads (`tid`: the first).
    Polling {
        tid: u32,
        desc: String,
        answers: u64,
        since: u64,
        threads: u32,
    },
    /// In no traced call: its last traced call, and how long before the log's end (ns).
    Idle { last: Option<(String, u64)> },
    /// The process exited, this long before the log's end (ns), with this status or signal.
    Exited { ago: u64, status: i64, signal: i64 },
}

/// A member that entered the operation where the group diverges.
#[derive(Clone, Debug)]
pub struct Entered {
    pub rank: u32,
    pub proc: ProcKey,
    /// Where it called the operation from (crate::report::gather::Op::site; 0: unknown).
    pub site: u64,
    /// When it entered the operation (None: it is past it, or the log does not say).
    pub start: Option<u64>,
    /// Where the operation is for this member.
    pub state: State,
    /// Not done: still in its call, or enqueued and not proven done.
    pub waiting: bool,
    /// How long it had waited when tracing stopped (ns), if it was waiting.
    pub waited: Option<u64>,
    /// How its process waits (when it is waiting).
    pub how: Vec<How>,
}

/// A member that never entered it.
#[derive(Clone, Debug)]
pub struct Missing {
    pub rank: u32,
    /// None: no log shows this rank at all.
    pub proc: Option<ProcKey>,
    /// Its last operation on the group, if any.
    pub last: Option<Op>,
    /// Its process's calls in flight when its log ended, with how long they had been.
    pub instead: Vec<(OpenCall, Option<u64>)>,
    /// What its process does instead: blocked or polling, or in no traced call since when.
    pub how: Vec<How>,
}

/// The earliest operation that is not done on some member; `missing` lists the members that
/// never entered it, and is empty when every member enqueued it.
#[derive(Clone, Debug)]
pub struct Divergence {
    pub order: u64,
    /// The operation, as the members that entered it called it (the most common signature).
    pub op: String,
    pub entered: Vec<Entered>,
    pub missing: Vec<Missing>,
    /// Every member enqueued it, none completed it, and they agree on it: a hang on the
    /// device or the network.
    pub on_device: bool,
    /// The classes of a disagreement at this operation ("size", "collective type").
    pub mismatch: Vec<String>,
    /// The longest an earlier operation of the group took to complete (ns), if any did.
    pub slowest_done: Option<u64>,
    /// Every waiting member has waited less than the group's operations took (or 10 times
    /// that, and under a second): work in progress rather than a hang.
    pub in_progress: bool,
}

/// Point to point without its other half, or one side still waiting.
#[derive(Clone, Debug)]
pub struct Unmatched {
    pub from: u32,
    pub to: u32,
    pub sends: u64,
    pub recvs: u64,
    /// The sender's last send and the receiver's last receive, each with how long it had been
    /// in flight when tracing stopped (None: it returned).
    pub last_send: Option<(Op, Option<u64>)>,
    pub last_recv: Option<(Op, Option<u64>)>,
}

#[derive(Clone, Debug)]
pub struct GroupFinding {
    pub pack: String,
    pub key: String,
    pub id: u64,
    pub size: Option<u32>,
    pub members: Vec<u32>,
    pub divergence: Option<Divergence>,
    pub mismatches: Vec<Mismatch>,
    pub more_mismatches: u64,
    pub unmatched: Vec<Unmatched>,
}

/// One wait on a deadlock cycle: `proc` (as `rank` of group `id`) waits in operation `order`
/// for the next process on the cycle.
#[derive(Clone, Debug)]
pub struct Wait {
    pub proc: ProcKey,
    pub rank: u32,
    pub key: String,
    pub id: u64,
    pub order: u64,
    pub op: String,
}

/// One step of a deadlock on the device: operation `order` of group `id`, on member `rank`'s
/// device, cannot start before `behind` (another group's operation) completes there, through
/// their streams (the same stream in order, or a stream made to wait for another's event).
#[derive(Clone, Debug)]
pub struct DeviceWait {
    /// The waiting operation, on that member.
    pub step: Wait,
    /// (key, id, order) of the operation it waits behind.
    pub behind: (String, u64, u64),
}

#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub groups: Vec<GroupFinding>,
    /// Groups in which nothing was found (every member at the same place, nothing in flight).
    pub quiet: usize,
    pub deadlocks: Vec<Vec<Wait>>,
    /// Cycles of operations that wait behind each other on their members' devices.
    pub device_deadlocks: Vec<Vec<DeviceWait>>,
}

/// How long a call begun at `start` had lasted when its log (of process `proc`) stopped.
fn waited(stops: &[u64], proc: ProcKey, start: Option<u64>) -> Option<u64> {
    let stop = *stops.get(proc.0 as usize)?;
    start.map(|s| stop.saturating_sub(s))
}

/// How process `proc` waits when its log ended: its calls in flight, its unanswered polls,
/// and, when thread `tid` (the one that makes the group's calls) is in none of them, that
/// thread's last traced call (with no thread: the process's, if nothing else is said).
fn how(gather: &Gather, stops: &[u64], proc: ProcKey, tid: Option<u32>) -> Vec<How> {
    let Some(p) = gather.procs.get(&proc) else {
        return Vec::new();
    };
    let stop = stops.get(proc.0 as usize).copied().unwrap_or(0);
    if let Some((at, status, signal)) = p.exited {
        // Gone: nothing it does matters but that.
        return vec![How::Exited {
            ago: stop.saturating_sub(at),
            status,
            signal,
        }];
    }
    let mut out: Vec<How> = p
        .open
        .iter()
        .map(|o| How::Blocked {
            tid: o.tid,
            desc: o.desc.clone(),
            waited: waited(stops, proc, o.start),
        })
        .collect();
    // One line per query, whatever the threads that poll it (a watchdog and the main thread).
    for q in &p.polling {
        let since = stop.saturating_sub(q.since);
        match out
            .iter_mut()
            .find(|h| matches!(h, How::Polling { desc, .. } if *desc == q.desc))
        {
            Some(How::Polling {
                answers,
                since: s,
                threads,
                ..
            }) => {
                *answers += q.answers;
                *s = (*s).max(since);
                *threads += 1;
            }
            _ => out.push(How::Polling {
                tid: q.tid,
                desc: q.desc.clone(),
                answers: q.answers,
                since,
                threads: 1,
            }),
        }
    }
    let idle = |last: Option<&(u64, String)>| How::Idle {
        last: last.map(|(t, d)| (d.clone(), stop.saturating_sub(*t))),
    };
    match tid {
        Some(t) if !p.open.iter().any(|o| o.tid == t) && !p.polling.iter().any(|q| q.tid == t) => {
            out.push(idle(p.last_by_tid.get(&t).or(p.last_call.as_ref())));
        }
        None if out.is_empty() => out.push(idle(p.last_call.as_ref())),
        _ => {}
    }
    out
}

/// Where operation `order` is for member `m`.
fn state_at(m: &Member, order: u64) -> State {
    if let Some(_p) = m.pending.get(&order) {
        return State::Pending;
    }
    if m.last.order == order {
        return m.last.state.clone();
    }
    match m.done.get(&order) {
        Some((at, by)) => State::Done {
            at: *at,
            by: by.clone(),
        },
        None => State::Done {
            at: 0,
            by: String::new(),
        },
    }
}

/// Whether operation `order` is proven done on some member: a collective completes on all
/// its members together, so it is done on the others too.
fn done_somewhere(g: &Group, order: u64) -> bool {
    g.members
        .values()
        .any(|m| m.last.order >= order && matches!(state_at(m, order), State::Done { .. }))
}

fn divergence(g: &Group, gather: &Gather, stops: &[u64]) -> Option<Divergence> {
    // The earliest operation not done on some member: pending (and done on no other member),
    // or still in its call.
    let stuck = g
        .members
        .values()
        .flat_map(|m| {
            let in_call = (m.last.state == State::InCall).then_some(m.last.order);
            m.pending.keys().copied().chain(in_call)
        })
        .filter(|&o| {
            // A member still in the call is stuck there, whatever the others did.
            !done_somewhere(g, o)
                || g.members
                    .values()
                    .any(|m| m.last.order == o && m.last.state == State::InCall)
        })
        .min();
    // The earliest operation some member entered and another never did.
    let highest = g.members.values().map(|m| m.last.order).max().unwrap_or(0);
    let behind = g
        .members
        .values()
        .map(|m| m.last.order + 1)
        .filter(|&o| o <= highest)
        .min();
    let absent = match g.size {
        Some(n) => (g.members.len() as u32) < n,
        None => g.procs.keys().any(|r| !g.members.contains_key(r)),
    };
    let behind = behind.or(if absent && highest > 0 { Some(1) } else { None });
    let order = [stuck, behind].into_iter().flatten().min()?;
    let mut entered = Vec::new();
    let mut missing = Vec::new();
    for (&rank, m) in &g.members {
        if m.last.order >= order {
            let mut state = state_at(m, order);
            if state == State::Pending && done_somewhere(g, order) {
                state = State::DoneByPeers;
            }
            let waiting = state.waiting();
            let (start, site) = if m.last.order == order {
                (m.last.start, m.last.site)
            } else {
                m.pending.get(&order).map_or((None, 0), |p| (p.0, p.2))
            };
            entered.push(Entered {
                rank,
                proc: m.proc,
                site,
                start,
                waiting,
                waited: if waiting {
                    waited(stops, m.proc, start)
                } else {
                    None
                },
                how: if waiting {
                    how(gather, stops, m.proc, Some(m.last.tid))
                } else {
                    Vec::new()
                },
                state,
            });
        } else {
            missing.push(Missing {
                rank,
                proc: Some(m.proc),
                last: Some(m.last.clone()),
                instead: gather
                    .procs
                    .get(&m.proc)
                    .map(|p| {
                        p.open
                            .iter()
                            .map(|o| (o.clone(), waited(stops, m.proc, o.start)))
                            .collect()
                    })
                    .unwrap_or_default(),
                how: how(gather, stops, m.proc, Some(m.last.tid)),
            });
        }
    }
    // Members with no operation: created the group and went elsewhere, or in no log at all.
    let others: Vec<u32> = match g.size {
        Some(n) => super::ranks::missing(n, g.members.keys().copied()),
        None => g
            .procs
            .keys()
            .filter(|r| !g.members.contains_key(r))
            .copied()
            .collect(),
    };
    for rank in others {
        let proc = g.procs.get(&rank).copied();
        missing.push(Missing {
            rank,
            proc,
            last: None,
            instead: proc
                .and_then(|p| gather.procs.get(&p).map(|pr| (p, pr)))
                .map(|(p, pr)| {
                    pr.open
                        .iter()
                        .map(|o| (o.clone(), waited(stops, p, o.start)))
                        .collect()
                })
                .unwrap_or_default(),
            how: proc
                .map(|p| how(gather, stops, p, None))
                .unwrap_or_default(),
        });
    }
    let agg = g.ops.get(&order);
    let op = agg
        .and_then(|a| a.sigs.iter().max_by_key(|s| s.2.len()))
        .map(|s| s.1.clone())
        .filter(|d| !d.is_empty())
        .or_else(|| {
            g.members
                .values()
                .find(|m| m.last.order == order)
                .map(|m| m.last.desc.clone())
        })
        .or_else(|| {
            g.members
                .values()
                .find_map(|m| m.pending.get(&order).map(|p| p.1.clone()))
        })
        .unwrap_or_default();
    let mismatch = match agg {
        Some(a) if a.sigs.len() > 1 => {
            super::gather::mismatch(order, a.clone(), &gather.specs[g.spec].1).classes
        }
        _ => g
            .mismatches
            .iter()
            .find(|m| m.order == order)
            .map(|m| m.classes.clone())
            .unwrap_or_default(),
    };
    let longest_wait = entered.iter().filter_map(|e| e.waited).max();
    let in_progress = missing.is_empty()
        && mismatch.is_empty()
        && match (longest_wait, g.slowest_done) {
            (Some(w), Some(s)) => w <= s.saturating_mul(10).min(1_000_000_000).max(s),
            (Some(w), None) => w < 1_000_000,
            (None, _) => false,
        };
    let on_device = missing.is_empty()
        && mismatch.is_empty()
        && !in_progress
        && !entered.is_empty()
        && entered.iter().all(|e| e.state == State::Pending);
    Some(Divergence {
        order,
        op,
        entered,
        missing,
        on_device,
        mismatch,
        slowest_done: g.slowest_done,
        in_progress,
    })
}

fn unmatched(g: &Group, stops: &[u64]) -> Vec<Unmatched> {
    let with_wait = |last: &Option<(Op, ProcKey)>| {
        last.clone().map(|(op, proc)| {
            let w = if op.state.waiting() {
                waited(stops, proc, op.start)
            } else {
                None
            };
            (op, w)
        })
    };
    let open = |last: &Option<(Op, ProcKey)>| last.as_ref().is_some_and(|(o, _)| o.state.waiting());
    g.p2p
        .iter()
        .filter(|(_, p)| p.sends != p.recvs || open(&p.last_send) || open(&p.last_recv))
        .map(|(&(from, to), p)| Unmatched {
            from,
            to,
            sends: p.sends,
            recvs: p.recvs,
            last_send: with_wait(&p.last_send),
            last_recv: with_wait(&p.last_recv),
        })
        .collect()
}

/// Deadlock cycles in the wait-for graph: an edge from each waiting member's process to the
/// process of each member that never entered the operation it waits in, and from a process
/// waiting in a send or receive to its peer's process.
fn deadlocks(findings: &[GroupFinding], groups: &BTreeMap<(usize, u64), Group>) -> Vec<Vec<Wait>> {
    // proc -> (waits, to proc)
    let mut edges: BTreeMap<ProcKey, Vec<(Wait, ProcKey)>> = BTreeMap::new();
    for f in findings {
        let grp = groups.values().find(|g| g.id == f.id);
        for u in &f.unmatched {
            let sides = [(&u.last_send, u.from, u.to), (&u.last_recv, u.to, u.from)];
            for (last, me, peer) in sides {
                let Some((op, Some(_))) = last else { continue };
                let (Some(p_me), Some(p_peer)) = (
                    grp.and_then(|g| g.p2p.get(&(u.from, u.to))).and_then(|p| {
                        if me == u.from {
                            p.last_send.as_ref().map(|x| x.1)
                        } else {
                            p.last_recv.as_ref().map(|x| x.1)
                        }
                    }),
                    grp.and_then(|g| g.procs.get(&peer)).copied(),
                ) else {
                    continue;
                };
                if p_me != p_peer {
                    edges.entry(p_me).or_default().push((
                        Wait {
                            proc: p_me,
                            rank: me,
                            key: f.key.clone(),
                            id: f.id,
                            order: op.order,
                            op: op.desc.clone(),
                        },
                        p_peer,
                    ));
                }
            }
        }
        let Some(d) = &f.divergence else { continue };
        for e in d.entered.iter().filter(|e| e.waiting) {
            for m in &d.missing {
                let Some(to) = m.proc else { continue };
                if to == e.proc {
                    continue;
                }
                edges.entry(e.proc).or_default().push((
                    Wait {
                        proc: e.proc,
                        rank: e.rank,
                        key: f.key.clone(),
                        id: f.id,
                        order: d.order,
                        op: d.op.clone(),
                    },
                    to,
                ));
            }
        }
    }
    // Each cycle once: found from its smallest process, by depth-first search.
    let mut cycles: Vec<Vec<Wait>> = Vec::new();
    let mut seen_sets: BTreeSet<Vec<ProcKey>> = BTreeSet::new();
    for &start in edges.keys() {
        let mut path: Vec<(Wait, ProcKey)> = Vec::new();
        search(start, start, &edges, &mut path, &mut cycles, &mut seen_sets);
        if cycles.len() >= 16 {
            break;
        }
    }
    cycles
}

fn search(
    start: ProcKey,
    at: ProcKey,
    edges: &BTreeMap<ProcKey, Vec<(Wait, ProcKey)>>,
    path: &mut Vec<(Wait, ProcKey)>,
    cycles: &mut Vec<Vec<Wait>>,
    seen: &mut BTreeSet<Vec<ProcKey>>,
) {
    if path.len() > 16 || cycles.len() >= 16 {
        return;
    }
    for (w, to) in edges.get(&at).map(Vec::as_slice).unwrap_or_default() {
        if *to == start {
            let mut procs: Vec<ProcKey> = path.iter().map(|p| p.0.proc).collect();
            procs.push(w.proc);
            let mut key = procs.clone();
            key.sort_unstable();
            if seen.insert(key) {
                let mut c: Vec<Wait> = path.iter().map(|p| p.0.clone()).collect();
                c.push(w.clone());
                cycles.push(c);
            }
            continue;
        }
        // Only through larger processes than the start: each cycle is found from its smallest.
        if *to < start || path.iter().any(|p| p.0.proc == *to) {
            continue;
        }
        path.push((w.clone(), *to));
        search(start, *to, edges, path, cycles, seen);
        path.pop();
    }
}

/// What the report says, from what was gathered; `stops[log]` is when each log's tracing
/// stopped (on its own clock).
pub fn analyze(g: &Gather, stops: &[u64]) -> Findings {
    let mut out = Findings::default();
    for grp in g.groups.values() {
        let (pack, spec) = &g.specs[grp.spec];
        // Operations not seen on every member: a disagreement among those that entered.
        let mut mismatches = grp.mismatches.clone();
        for (&order, agg) in &grp.ops {
            if agg.sigs.len() > 1 {
                mismatches.push(super::gather::mismatch(order, agg.clone(), spec));
            }
        }
        let f = GroupFinding {
            pack: pack.clone(),
            key: spec.group.clone(),
            id: grp.id,
            size: grp.size,
            members: grp.members.keys().copied().collect(),
            divergence: divergence(grp, g, stops),
            mismatches,
            more_mismatches: g
                .more_mismatches
                .get(&(grp.spec, grp.id))
                .copied()
                .unwrap_or(0),
            unmatched: unmatched(grp, stops),
        };
        if f.divergence.is_none() && f.mismatches.is_empty() && f.unmatched.is_empty() {
            out.quiet += 1;
        } else {
            out.groups.push(f);
        }
    }
    out.deadlocks = deadlocks(&out.groups, &g.groups);
    out.device_deadlocks = device_deadlocks(g);
    out
}

/// Cycles among the operations pending on the devices: a collective completes only when it
/// runs on every member, and on each member it waits behind the pending work before it on its
/// stream and behind the events its stream was made to wait for. Operation A waiting behind B
/// on one member while B waits behind A on another is a deadlock no host call shows: every
/// member enqueued both and none can complete.
fn device_deadlocks(g: &Gather) -> Vec<Vec<DeviceWait>> {
    type Node = (usize, u64, u64);
    // node -> (node it waits behind, the member and process where it does)
    let mut edges: BTreeMap<Node, Vec<(Node, u32, ProcKey)>> = BTreeMap::new();
    for (a, b) in g.completion.waits() {
        let (Some((sa, ga, ma, oa)), Some((sb, gb, _, ob))) = (g.pending_op(a), g.pending_op(b))
        else {
            continue;
        };
        if (sa, ga) == (sb, gb) || ma == u32::MAX {
            // Within one group, operations run in their order: no cycle there.
            continue;
        }
        let Some(proc) = g.groups.get(&(sa, ga)).and_then(|grp| grp.procs.get(&ma)) else {
            continue;
        };
        let list = edges.entry((sa, ga, oa)).or_default();
        if !list.iter().any(|e| e.0 == (sb, gb, ob)) {
            list.push(((sb, gb, ob), ma, *proc));
        }
    }
    let desc = |n: &Node| -> String {
        g.groups
            .get(&(n.0, n.1))
            .and_then(|grp| {
                grp.members.values().find_map(|m| {
                    m.pending
                        .get(&n.2)
                        .map(|p| p.1.clone())
                        .or_else(|| (m.last.order == n.2).then(|| m.last.desc.clone()))
                })
            })
            .unwrap_or_default()
    };
    let key = |n: &Node| g.specs[n.0].1.group.clone();
    let mut cycles = Vec::new();
    let mut seen: BTreeSet<Vec<Node>> = BTreeSet::new();
    for &start in edges.keys() {
        // Depth-first, through nodes after the start only: each cycle found once, from its
        // smallest node.
        let mut stack: Vec<(Node, usize)> = vec![(start, 0)];
        let mut path: Vec<(Node, u32, ProcKey)> = Vec::new();
        while let Some((at, i)) = stack.pop() {
            let next = edges.get(&at).and_then(|l| l.get(i)).copied();
            let Some((to, rank, proc)) = next else {
                path.pop();
                continue;
            };
            stack.push((at, i + 1));
            if to == start {
                let mut steps = path.clone();
                steps.push((at, rank, proc));
                let mut nodes: Vec<Node> = steps.iter().map(|s| s.0).collect();
                nodes.sort_unstable();
                if seen.insert(nodes) {
                    let n = steps.len();
                    cycles.push(
                        (0..n)
                            .map(|k| {
                                let (node, rank, proc) = steps[k];
                                let behind = if k + 1 < n { steps[k + 1].0 } else { start };
                                DeviceWait {
                                    step: Wait {
                                        proc,
                                        rank,
                                        key: key(&node),
                                        id: node.1,
                                        order: node.2,
                                        op: desc(&node),
                                    },
                                    behind: (key(&behind), behind.1, behind.2),
                                }
                            })
                            .collect(),
                    );
                }
                continue;
            }
            if to < start || path.iter().any(|p| p.0 == to) || path.len() > 16 {
                continue;
            }
            path.push((at, rank, proc));
            stack.push((to, 0));
        }
        if cycles.len() >= 16 {
            break;
        }
    }
    cycles
}
