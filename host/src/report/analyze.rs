//! From what the reading gathered to what the report says: per group, the operation where its
//! members diverge (who entered it and since when, who never did, what those do instead);
//! operations whose members disagree (mismatches); sends without their receives; and the
//! wait-for graph across groups, whose cycles are deadlocks.

use std::collections::{BTreeMap, BTreeSet};

use super::gather::{Gather, Group, Mismatch, Op, OpenCall, ProcKey};

/// A member that entered the operation where the group diverges.
#[derive(Clone, Debug)]
pub struct Entered {
    pub rank: u32,
    pub proc: ProcKey,
    pub start: Option<u64>,
    /// Still in it when its log ended.
    pub waiting: bool,
    /// How long it had waited when tracing stopped (ns), if it was waiting.
    pub waited: Option<u64>,
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
}

/// The earliest operation some member is stuck in; `missing` lists the members that never
/// entered it, and is empty when every member is in it (a mismatch, a hang on the device).
#[derive(Clone, Debug)]
pub struct Divergence {
    pub order: u64,
    /// The operation, as the members that entered it called it (the most common signature).
    pub op: String,
    pub entered: Vec<Entered>,
    pub missing: Vec<Missing>,
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

#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub groups: Vec<GroupFinding>,
    /// Groups in which nothing was found (every member at the same place, nothing in flight).
    pub quiet: usize,
    pub deadlocks: Vec<Vec<Wait>>,
}

/// How long a call begun at `start` had lasted when its log (of process `proc`) stopped.
fn waited(stops: &[u64], proc: ProcKey, start: Option<u64>) -> Option<u64> {
    let stop = *stops.get(proc.0 as usize)?;
    start.map(|s| stop.saturating_sub(s))
}

fn divergence(g: &Group, gather: &Gather, stops: &[u64]) -> Option<Divergence> {
    // The earliest operation a member is stuck in.
    let order = g
        .members
        .values()
        .filter(|m| m.last.end.is_none())
        .map(|m| m.last.order)
        .min()?;
    let mut entered = Vec::new();
    let mut missing = Vec::new();
    for (&rank, m) in &g.members {
        if m.last.order >= order {
            let waiting = m.last.order == order && m.last.end.is_none();
            entered.push(Entered {
                rank,
                proc: m.proc,
                start: if m.last.order == order {
                    m.last.start
                } else {
                    None
                },
                waiting,
                waited: if waiting {
                    waited(stops, m.proc, m.last.start)
                } else {
                    None
                },
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
        });
    }
    let op = g
        .ops
        .get(&order)
        .and_then(|a| a.sigs.iter().max_by_key(|s| s.2.len()))
        .map(|s| s.1.clone())
        .or_else(|| {
            g.members
                .values()
                .find(|m| m.last.order == order)
                .map(|m| m.last.desc.clone())
        })
        .unwrap_or_default();
    Some(Divergence {
        order,
        op,
        entered,
        missing,
    })
}

fn unmatched(g: &Group, stops: &[u64]) -> Vec<Unmatched> {
    let with_wait = |last: &Option<(Op, ProcKey)>| {
        last.clone().map(|(op, proc)| {
            let w = match op.end {
                None => waited(stops, proc, op.start),
                Some(_) => None,
            };
            (op, w)
        })
    };
    let open = |last: &Option<(Op, ProcKey)>| last.as_ref().is_some_and(|(o, _)| o.end.is_none());
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
                mismatches.push(Mismatch {
                    order,
                    sigs: agg
                        .sigs
                        .iter()
                        .map(|(_, d, m)| (d.clone(), m.clone()))
                        .collect(),
                });
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
    out
}
