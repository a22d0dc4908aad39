//! The report as JSON (`bthost report --json`), for schedulers and hang detectors that act on
//! it. Stable and versioned: `"format": "bthost-report"`, `"version": 1`; a later version only
//! adds fields (docs/report-json.md describes each). Times are nanoseconds; ids are hex
//! strings (`"0x8205c3feda2d0ee5"`); rank sets are lists of numbers and, for reading, the
//! compressed text (`"0-16,18-63"`).

use serde::Serialize;

use super::analyze::{Findings, How, Missing};
use super::gather::{Gather, Op, OpenCall, ProcKey, State};
use super::ranks::compress;
use super::Context;

pub const VERSION: u32 = 2;

#[derive(Serialize)]
pub struct Report {
    pub format: &'static str,
    pub version: u32,
    pub logs: Vec<LogJ>,
    pub clocks: ClocksJ,
    pub groups: Vec<GroupJ>,
    /// Groups where nothing was found.
    pub quiet_groups: usize,
    pub deadlocks: Vec<Vec<WaitJ>>,
    /// Cycles of operations waiting behind each other on the members' devices.
    pub device_deadlocks: Vec<Vec<DeviceWaitJ>>,
    /// The stacks record took of the members named as waiting or missing (docs/report-json.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<StacksJ>,
}

/// One named member's process's stacks at its log's last dump.
#[derive(Serialize)]
pub struct StacksJ {
    pub process: ProcJ,
    /// Its ranks in the groups that name it.
    pub ranks: Vec<u32>,
    #[serde(flatten)]
    pub stacks: super::stacks::ProcView,
}

/// The stacks of the processes the findings name as waiting or missing.
fn stacks_j(g: &Gather, f: &Findings) -> Vec<StacksJ> {
    let mut named: std::collections::BTreeMap<ProcKey, Vec<u32>> = Default::default();
    for d in f.groups.iter().filter_map(|gf| gf.divergence.as_ref()) {
        let waiting = d
            .entered
            .iter()
            .filter(|e| e.waiting)
            .map(|e| (e.rank, Some(e.proc)));
        for (rank, p) in waiting.chain(d.missing.iter().map(|m| (m.rank, m.proc))) {
            if let Some(p) = p {
                let r = named.entry(p).or_default();
                if !r.contains(&rank) {
                    r.push(rank);
                }
            }
        }
    }
    named
        .into_iter()
        .filter_map(|(p, ranks)| {
            Some(StacksJ {
                process: proc_j(g, p),
                ranks,
                stacks: g.stacks.by_proc.get(&p)?.clone(),
            })
        })
        .collect()
}

#[derive(Serialize)]
pub struct DeviceWaitJ {
    #[serde(flatten)]
    pub step: WaitJ,
    pub behind_key: String,
    pub behind_id: String,
    pub behind_order: u64,
}

#[derive(Serialize)]
pub struct LogJ {
    pub path: String,
    pub host: String,
    pub boot: Option<String>,
    /// When tracing stopped, on this log's clock (CLOCK_MONOTONIC ns).
    pub stopped_at: u64,
    /// What to add to this log's times to put them on the first log's clock (ns).
    pub shift: i64,
    /// Tracing stopped early (the log's `#Q` mark): when and why, in words; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// Tracing stopped and started again (the log's `#G` marks): when and why, in words;
    /// absent when there was no gap.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
    /// The log ends without record's end mark (its recorder was killed); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
}

#[derive(Serialize)]
pub struct ClocksJ {
    pub how: String,
    /// Largest uncertainty of a shift (ns): 0 when the logs share one clock.
    pub uncertainty_ns: u64,
}

#[derive(Serialize)]
pub struct ProcJ {
    pub log: u16,
    pub host: String,
    pub pid: u32,
    pub name: String,
}

#[derive(Serialize)]
pub struct OpJ {
    pub order: u64,
    pub call: String,
    pub tid: u32,
    pub start: Option<u64>,
    pub returned: bool,
    /// Where the operation is (see [`state_name`]).
    pub state: &'static str,
    /// Where it was called from (`train_step (train.c:31)`), where the pack records its call
    /// site and the log's maps name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub called_from: Option<String>,
}

/// How a process waits (docs/report-json.md, "how").
#[derive(Serialize)]
pub struct HowJ {
    /// "blocked" (in a call), "polling" (a query answering not ready), "idle" (in no call).
    pub kind: &'static str,
    pub tid: Option<u32>,
    pub call: Option<String>,
    /// Blocked: how long (ns). Polling: since when the answers came (ns before the stop).
    /// Idle: how long since its last traced call returned.
    pub for_ns: Option<u64>,
    pub answers: Option<u64>,
    /// Polling: the threads that poll it (`tid` is the first); their answers are summed.
    pub threads: Option<u32>,
    /// Exited: its exit status, and the signal that ended it (0: none).
    pub status: Option<i64>,
    pub signal: Option<i64>,
}

#[derive(Serialize)]
pub struct OpenJ {
    pub tid: u32,
    pub call: String,
    pub start: Option<u64>,
    /// How long it had been in flight when tracing stopped (ns).
    pub waited_ns: Option<u64>,
    /// The group operation it is, if it is one.
    pub group: Option<String>,
    pub order: Option<u64>,
}

#[derive(Serialize)]
pub struct EnteredJ {
    pub rank: u32,
    pub process: ProcJ,
    pub start: Option<u64>,
    pub waiting: bool,
    pub waited_ns: Option<u64>,
    pub state: &'static str,
    /// When a later call proved it done, and which (for "completed").
    pub completed_at: Option<u64>,
    pub completed_by: Option<String>,
    pub how: Vec<HowJ>,
    /// Where it called the operation from (as [`OpJ::called_from`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub called_from: Option<String>,
}

#[derive(Serialize)]
pub struct MissingJ {
    pub rank: u32,
    /// None: no log shows this rank.
    pub process: Option<ProcJ>,
    pub last: Option<OpJ>,
    pub in_flight: Vec<OpenJ>,
    pub how: Vec<HowJ>,
}

#[derive(Serialize)]
pub struct DivergenceJ {
    pub order: u64,
    pub call: String,
    pub entered: Vec<EnteredJ>,
    pub entered_ranks: String,
    pub missing: Vec<MissingJ>,
    pub missing_ranks: String,
    /// Every member enqueued it, none completed it, and they agree: a hang on the device or
    /// the network.
    pub on_device: bool,
    /// The classes of a disagreement at this operation.
    pub mismatch: Vec<String>,
    /// The longest an earlier operation of the group took to complete (ns).
    pub slowest_done_ns: Option<u64>,
    /// Every member waited less than such operations take: work in progress, not a hang.
    pub in_progress: bool,
}

#[derive(Serialize)]
pub struct MismatchJ {
    pub order: u64,
    /// Each distinct call, and the ranks that made it.
    pub calls: Vec<(String, Vec<u32>)>,
    /// "collective type", or the pack's classes of the fields that differ ("size", "dtype").
    pub classes: Vec<String>,
}

#[derive(Serialize)]
pub struct UnmatchedJ {
    pub from: u32,
    pub to: u32,
    pub sends: u64,
    pub receives: u64,
    pub last_send: Option<OpJ>,
    pub last_send_waited_ns: Option<u64>,
    pub last_receive: Option<OpJ>,
    pub last_receive_waited_ns: Option<u64>,
}

#[derive(Serialize)]
pub struct GroupJ {
    pub pack: String,
    pub key: String,
    pub id: String,
    pub size: Option<u32>,
    pub members_seen: usize,
    pub divergence: Option<DivergenceJ>,
    pub mismatches: Vec<MismatchJ>,
    pub more_mismatches: u64,
    pub unmatched: Vec<UnmatchedJ>,
}

#[derive(Serialize)]
pub struct WaitJ {
    pub process: ProcJ,
    pub rank: u32,
    pub key: String,
    pub id: String,
    pub order: u64,
    pub call: String,
}

fn proc_j(g: &Gather, p: ProcKey) -> ProcJ {
    let pr = g.procs.get(&p);
    ProcJ {
        log: p.0,
        host: pr.map(|x| x.host.clone()).unwrap_or_default(),
        pid: p.1,
        name: pr.map(|x| x.comm.clone()).unwrap_or_default(),
    }
}

/// A state's name in JSON.
pub fn state_name(s: &State) -> &'static str {
    match s {
        State::InCall => "in_call",
        State::Pending => "pending",
        State::Done { by, .. } if by.is_empty() => "returned",
        State::Done { .. } => "completed",
        State::DoneByPeers => "completed_by_peers",
        State::Failed => "failed",
    }
}

fn op_j(o: &Op) -> OpJ {
    OpJ {
        order: o.order,
        call: o.desc.clone(),
        tid: o.tid,
        start: o.start,
        returned: o.end.is_some(),
        state: state_name(&o.state),
        called_from: None,
    }
}

fn wait_j(g: &Gather, w: &super::analyze::Wait) -> WaitJ {
    WaitJ {
        process: proc_j(g, w.proc),
        rank: w.rank,
        key: w.key.clone(),
        id: format!("{:#x}", w.id),
        order: w.order,
        call: w.op.clone(),
    }
}

fn how_j(h: &How) -> HowJ {
    match h {
        How::Blocked { tid, desc, waited } => HowJ {
            kind: "blocked",
            tid: Some(*tid),
            call: Some(desc.clone()),
            for_ns: *waited,
            answers: None,
            threads: None,
            status: None,
            signal: None,
        },
        How::Polling {
            tid,
            desc,
            answers,
            since,
            threads,
        } => HowJ {
            kind: "polling",
            tid: Some(*tid),
            call: Some(desc.clone()),
            for_ns: Some(*since),
            answers: Some(*answers),
            threads: Some(*threads),
            status: None,
            signal: None,
        },
        How::Exited {
            ago,
            status,
            signal,
        } => HowJ {
            kind: "exited",
            tid: None,
            call: None,
            for_ns: Some(*ago),
            answers: None,
            threads: None,
            status: Some(*status),
            signal: Some(*signal),
        },
        How::Idle { last } => HowJ {
            kind: "idle",
            tid: None,
            call: last.as_ref().map(|l| l.0.clone()),
            for_ns: last.as_ref().map(|l| l.1),
            answers: None,
            threads: None,
            status: None,
            signal: None,
        },
    }
}

fn open_j(o: &OpenCall, waited: Option<u64>) -> OpenJ {
    OpenJ {
        tid: o.tid,
        call: o.desc.clone(),
        start: o.start,
        waited_ns: waited,
        group: o.group_op.map(|(_, id, ..)| format!("{id:#x}")),
        order: o.group_op.map(|(.., order)| order),
    }
}

fn missing_j(g: &Gather, m: &Missing) -> MissingJ {
    MissingJ {
        rank: m.rank,
        process: m.proc.map(|p| proc_j(g, p)),
        last: m.last.as_ref().map(|o| OpJ {
            called_from: m
                .proc
                .and_then(|p| g.sites.name(p, o.site))
                .map(str::to_string),
            ..op_j(o)
        }),
        in_flight: m.instead.iter().map(|(o, w)| open_j(o, *w)).collect(),
        how: m.how.iter().map(how_j).collect(),
    }
}

pub fn build(cx: &Context, g: &Gather, f: &Findings) -> Report {
    Report {
        format: "bthost-report",
        version: VERSION,
        logs: cx
            .logs
            .iter()
            .zip(&cx.alignment.shifts)
            .map(|(l, &shift)| LogJ {
                path: l.path.display().to_string(),
                host: l.host.clone(),
                boot: l.boot.clone(),
                stopped_at: l.stopped_at,
                shift,
                stopped_early: l.stopped_early.clone(),
                gaps: l.gaps.clone(),
                cut: l.cut,
            })
            .collect(),
        clocks: ClocksJ {
            how: cx.alignment.how.clone(),
            uncertainty_ns: cx.alignment.uncertainty,
        },
        groups: f
            .groups
            .iter()
            .map(|gf| GroupJ {
                pack: gf.pack.clone(),
                key: gf.key.clone(),
                id: format!("{:#x}", gf.id),
                size: gf.size,
                members_seen: gf.members.len(),
                divergence: gf.divergence.as_ref().map(|d| DivergenceJ {
                    order: d.order,
                    call: d.op.clone(),
                    entered_ranks: compress(d.entered.iter().map(|e| e.rank)),
                    entered: d
                        .entered
                        .iter()
                        .map(|e| EnteredJ {
                            rank: e.rank,
                            process: proc_j(g, e.proc),
                            start: e.start,
                            waiting: e.waiting,
                            waited_ns: e.waited,
                            state: state_name(&e.state),
                            completed_at: match &e.state {
                                State::Done { at, by } if !by.is_empty() => Some(*at),
                                _ => None,
                            },
                            completed_by: match &e.state {
                                State::Done { by, .. } if !by.is_empty() => Some(by.clone()),
                                _ => None,
                            },
                            how: e.how.iter().map(how_j).collect(),
                            called_from: g.sites.name(e.proc, e.site).map(str::to_string),
                        })
                        .collect(),
                    missing_ranks: compress(d.missing.iter().map(|m| m.rank)),
                    missing: d.missing.iter().map(|m| missing_j(g, m)).collect(),
                    on_device: d.on_device,
                    mismatch: d.mismatch.clone(),
                    slowest_done_ns: d.slowest_done,
                    in_progress: d.in_progress,
                }),
                mismatches: gf
                    .mismatches
                    .iter()
                    .map(|m| MismatchJ {
                        order: m.order,
                        calls: m.sigs.clone(),
                        classes: m.classes.clone(),
                    })
                    .collect(),
                more_mismatches: gf.more_mismatches,
                unmatched: gf
                    .unmatched
                    .iter()
                    .map(|u| UnmatchedJ {
                        from: u.from,
                        to: u.to,
                        sends: u.sends,
                        receives: u.recvs,
                        last_send: u.last_send.as_ref().map(|(o, _)| op_j(o)),
                        last_send_waited_ns: u.last_send.as_ref().and_then(|(_, w)| *w),
                        last_receive: u.last_recv.as_ref().map(|(o, _)| op_j(o)),
                        last_receive_waited_ns: u.last_recv.as_ref().and_then(|(_, w)| *w),
                    })
                    .collect(),
            })
            .collect(),
        quiet_groups: f.quiet,
        stacks: stacks_j(g, f),
        deadlocks: f
            .deadlocks
            .iter()
            .map(|c| c.iter().map(|w| wait_j(g, w)).collect())
            .collect(),
        device_deadlocks: f
            .device_deadlocks
            .iter()
            .map(|c| {
                c.iter()
                    .map(|w| DeviceWaitJ {
                        step: wait_j(g, &w.step),
                        behind_key: w.behind.0.clone(),
                        behind_id: format!("{:#x}", w.behind.1),
                        behind_order: w.behind.2,
                    })
                    .collect()
            })
            .collect(),
    }
}
