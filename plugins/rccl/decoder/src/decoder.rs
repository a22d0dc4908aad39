//! The decoder: learns communicators from init calls, numbers collectives, sets link keys.

use std::collections::HashMap;

use abi_stable::std_types::{RResult, RStr, RString, RVec};
use bthost_plugin_api::{Arg, Decoder, Event, Link, Phase, Record, Value};

use crate::comms::{mix, CommInfo, Comms};

/// Calls that are one operation on a communicator, numbered per rank.
const COLLECTIVES: &[&str] = &[
    "ncclAllReduce",
    "ncclBroadcast",
    "ncclBcast",
    "ncclReduce",
    "ncclAllGather",
    "ncclReduceScatter",
    "ncclAllToAll",
    "ncclAlltoAll", // NCCL's spelling (2.28+)
    "ncclAllToAllv",
    "ncclGather",
    "ncclScatter",
    "ncclSend",
    "ncclRecv",
];

/// Bytes per element of each ncclDataType_t (10, 11: NCCL's 8-bit floats).
const DATATYPE_SIZE: [u64; 12] = [1, 1, 4, 4, 8, 8, 2, 4, 8, 2, 1, 1];

/// A call begun on a thread whose exit will complete what it taught.
#[derive(Debug, Clone)]
enum Pending {
    Init {
        nranks: Option<i64>,
        rank: Option<i64>,
        uid: Option<u64>,
    },
    Split {
        parent: u64,
        color: i64,
    },
    /// Arguments and links the entry got, repeated on the exit.
    Op {
        args: Vec<Arg>,
        links: Vec<Link>,
    },
}

#[derive(Default, Debug)]
pub struct RcclDecoder {
    pub comms: Comms,
    pending: HashMap<(u32, u32), Pending>,
}

fn int(rec: &Record<'_>, name: &str) -> Option<i64> {
    rec.field(name).and_then(|a| a.value.as_i64())
}

fn uint(rec: &Record<'_>, name: &str) -> Option<u64> {
    rec.field(name).and_then(|a| a.value.as_u64())
}

fn ok(rec: &Record<'_>) -> bool {
    int(rec, "ret") == Some(0)
}

/// A captured device: -1 (all ones) means the call made no hipGetDevice.
fn device(rec: &Record<'_>) -> Option<i64> {
    int(rec, "device").filter(|d| (0..=4096).contains(d))
}

fn arg(name: &'static str, value: Value) -> Arg {
    Arg {
        name: RStr::from_str(name),
        value,
    }
}

fn set_links(out: &mut RVec<Event>, links: &[Link]) {
    for e in out.iter_mut() {
        for l in links {
            e.set_link(l.key, l.value);
        }
    }
}

fn comm_links(info: &CommInfo) -> Vec<Link> {
    let mut v = vec![Link {
        key: "comm".into(),
        value: info.identity,
    }];
    if let Some(d) = info.device {
        v.push(Link {
            key: "device".into(),
            value: d as u64,
        });
    }
    v
}

impl RcclDecoder {
    fn on_init_entry(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) {
        let uid = uint(rec, "uniqueId");
        self.pending.insert(
            (rec.pid, rec.tid),
            Pending::Init {
                nranks: int(rec, "nranks"),
                rank: int(rec, "rank"),
                uid,
            },
        );
        if let Some(u) = uid {
            set_links(
                out,
                &[Link {
                    key: "comm".into(),
                    value: u,
                }],
            );
        }
    }

    fn on_init_exit(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) {
        let Some(Pending::Init { nranks, rank, uid }) = self.pending.remove(&(rec.pid, rec.tid))
        else {
            return; // the entry predates the log
        };
        let comm = uint(rec, "comm").unwrap_or(0);
        if !ok(rec) || comm == 0 {
            return;
        }
        let info = CommInfo {
            identity: uid.unwrap_or(comm),
            global: uid.is_some(),
            rank,
            nranks,
            device: device(rec),
            ..CommInfo::default()
        };
        set_links(out, &comm_links(&info));
        self.comms.insert(rec.pid, comm, info);
    }

    fn on_split_exit(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) {
        let Some(Pending::Split { parent, color }) = self.pending.remove(&(rec.pid, rec.tid))
        else {
            return;
        };
        let newcomm = uint(rec, "newcomm").unwrap_or(0);
        if !ok(rec) || newcomm == 0 {
            return;
        }
        let p = self.comms.get_or_unknown(rec.pid, parent);
        p.splits += 1;
        // Every rank splits the same parent in the same order: (parent, split number, color)
        // is the same in all of them.
        let info = CommInfo {
            identity: mix(mix(p.identity, p.splits), color as u64),
            global: p.global,
            device: device(rec).or(p.device),
            ..CommInfo::default()
        };
        set_links(out, &comm_links(&info));
        self.comms.insert(rec.pid, newcomm, info);
    }

    fn on_op_entry(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) {
        let comm = uint(rec, "comm").unwrap_or(0);
        let info = self.comms.get_or_unknown(rec.pid, comm);
        info.seq += 1;
        let mut args = vec![arg("seq", Value::UInt(info.seq))];
        if let Some(r) = info.rank {
            args.push(arg("rank", Value::Int(r)));
        }
        if let Some(n) = info.nranks {
            args.push(arg("nranks", Value::Int(n)));
        }
        let size = int(rec, "datatype").and_then(|d| DATATYPE_SIZE.get(usize::try_from(d).ok()?));
        if let (Some(count), Some(size)) = (uint(rec, "count"), size) {
            args.push(arg("bytes", Value::UInt(count.saturating_mul(*size))));
        }
        let mut links = comm_links(info);
        links.push(Link {
            key: "coll".into(),
            value: mix(info.identity, info.seq),
        });
        for e in out.iter_mut() {
            e.args.extend(args.iter().cloned());
        }
        set_links(out, &links);
        self.pending
            .insert((rec.pid, rec.tid), Pending::Op { args, links });
    }

    fn on_op_exit(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) {
        if let Some(Pending::Op { args, links }) = self.pending.remove(&(rec.pid, rec.tid)) {
            for e in out.iter_mut() {
                for a in &args {
                    if e.arg(a.name.as_str()).is_none() {
                        e.args.push(a.clone());
                    }
                }
            }
            set_links(out, &links);
        }
    }

    /// Calls that name a communicator and teach one of its properties.
    fn on_query(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) {
        let Some(comm) = uint(rec, "comm") else {
            return;
        };
        let info = self.comms.get_or_unknown(rec.pid, comm);
        if ok(rec) {
            match rec.probe.as_str() {
                "ncclCommCount" => info.nranks = int(rec, "count").or(info.nranks),
                "ncclCommUserRank" => info.rank = int(rec, "rank").or(info.rank),
                "ncclCommCuDevice" => info.device = int(rec, "device").or(info.device),
                _ => {}
            }
        }
        let links = comm_links(info);
        set_links(out, &links);
    }
}

impl Decoder for RcclDecoder {
    fn on_record(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) -> RResult<(), RString> {
        let name = rec.probe.as_str();
        // Most calls arrive as one record at exit (Call): both what the entry teaches and what
        // the exit does. A call still in flight when tracing stopped arrives as its entry alone
        // (Entry, read back from the script's END dump); an exit after such an entry, as Exit.
        let (entry, exit) = match rec.phase {
            Phase::Entry => (true, false),
            Phase::Exit => (false, true),
            Phase::Call => (true, true),
        };
        match name {
            // ncclCommInitRankScalable's `uniqueId` is the first of its ids (the packs read it
            // through the array): the same on every rank.
            "ncclCommInitRank" | "ncclCommInitRankConfig" | "ncclCommInitRankScalable" => {
                if entry {
                    self.on_init_entry(rec, out);
                }
                if exit {
                    self.on_init_exit(rec, out);
                }
            }
            "ncclCommSplit" => {
                if entry {
                    let parent = uint(rec, "comm").unwrap_or(0);
                    let color = int(rec, "color").unwrap_or(0);
                    self.pending
                        .insert((rec.pid, rec.tid), Pending::Split { parent, color });
                    let links = comm_links(self.comms.get_or_unknown(rec.pid, parent));
                    set_links(out, &links);
                }
                if exit {
                    self.on_split_exit(rec, out);
                }
            }
            "ncclCommDestroy" | "ncclCommAbort" => {
                if entry {
                    if let Some(comm) = uint(rec, "comm") {
                        if let Some(info) = self.comms.get(rec.pid, comm) {
                            let links = comm_links(info);
                            set_links(out, &links);
                            self.pending.insert(
                                (rec.pid, rec.tid),
                                Pending::Op {
                                    args: Vec::new(),
                                    links,
                                },
                            );
                        }
                        self.comms.remove(rec.pid, comm);
                    }
                }
                if exit {
                    self.on_op_exit(rec, out);
                }
            }
            // Queries, and the other calls on a communicator (NCCL 2.14-2.27's finalize, its
            // watchdog's error poll, buffer and window registration, shrink's parent): linked
            // by the communicator's identity, as its collectives are.
            "ncclCommCount"
            | "ncclCommUserRank"
            | "ncclCommCuDevice"
            | "ncclCommFinalize"
            | "ncclCommGetAsyncError"
            | "ncclCommRegister"
            | "ncclCommDeregister"
            | "ncclCommWindowRegister"
            | "ncclCommWindowDeregister"
            | "ncclCommShrink" => self.on_query(rec, out),
            op if COLLECTIVES.contains(&op) => {
                if entry {
                    self.on_op_entry(rec, out);
                }
                if exit {
                    self.on_op_exit(rec, out);
                }
            }
            _ => {}
        }
        RResult::ROk(())
    }

    fn finish(&mut self, _out: &mut RVec<Event>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RSlice;
    use bthost_plugin_api::EventKind;

    fn arg(name: &'static str, value: Value) -> Arg {
        Arg {
            name: RStr::from_str(name),
            value,
        }
    }

    /// Feeds one call record of process `pid` with a generic draft event; returns the event
    /// as the decoder left it.
    fn feed(d: &mut RcclDecoder, probe: &'static str, pid: u32, fields: &[Arg]) -> Event {
        let rec = Record {
            line: 1,
            probe: RStr::from_str(probe),
            phase: Phase::Call,
            pid,
            tid: pid,
            ts: 10,
            dur: 5,
            fields: RSlice::from_slice(fields),
        };
        let mut out = RVec::from(vec![Event {
            kind: EventKind::Complete,
            pid,
            tid: pid,
            ts: 10,
            dur: 5,
            name: RStr::from_str(probe),
            pack: "rccl".into(),
            args: fields.iter().cloned().collect(),
            links: RVec::new(),
        }]);
        let res = d.on_record(&rec, &mut out);
        assert!(res.is_ok(), "{res:?}");
        out.pop().unwrap()
    }

    /// Two ranks that create their communicator with ncclCommInitRankScalable (NCCL 2.23+)
    /// share its identity, the first id's magic, as ncclCommInitRank's ranks do; their
    /// collectives and their finalize are linked by it.
    #[test]
    fn a_scalable_init_gives_the_communicator_its_ids_identity() {
        let mut d = RcclDecoder::default();
        for (pid, comm, rank) in [(1, 0xc1, 0), (2, 0xc2, 1)] {
            let init = feed(
                &mut d,
                "ncclCommInitRankScalable",
                pid,
                &[
                    arg("comm", Value::Hex(comm)),
                    arg("nranks", Value::Int(2)),
                    arg("rank", Value::Int(rank)),
                    arg("nId", Value::Int(1)),
                    arg("uniqueId", Value::UInt(0xabcdef)),
                    arg("ret", Value::Int(0)),
                ],
            );
            assert_eq!(init.link("comm"), Some(0xabcdef), "rank {rank}");
            let op = feed(
                &mut d,
                "ncclAllReduce",
                pid,
                &[
                    arg("count", Value::UInt(8)),
                    arg("comm", Value::Hex(comm)),
                    arg("ret", Value::Int(0)),
                ],
            );
            assert_eq!(op.link("comm"), Some(0xabcdef), "rank {rank}");
            assert_eq!(op.arg("rank").and_then(Value::as_i64), Some(rank));
            assert_eq!(op.arg("seq").and_then(Value::as_i64), Some(1));
            let fin = feed(
                &mut d,
                "ncclCommFinalize",
                pid,
                &[arg("comm", Value::Hex(comm)), arg("ret", Value::Int(0))],
            );
            assert_eq!(fin.link("comm"), Some(0xabcdef), "rank {rank}");
        }
    }
}
