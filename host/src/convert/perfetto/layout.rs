//! Where each call goes and when: tracks (a process track per process, a thread track per
//! thread, child tracks for overlapping calls, a track per device queue with a child track per
//! lane, crate::convert::device) and the slice events in timestamp order. Fed the calls in
//! start order; holds only the calls still open, so it streams.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rustc_hash::FxHashMap;

use super::proto::Msg;
use crate::calls::call::Call;
use crate::convert::device;

/// One thing to write, in order.
pub enum TrackEv {
    /// A TrackDescriptor message (its bytes), before the track's first use.
    Descriptor(Vec<u8>),
    /// The current call's slice begins.
    Begin { ts: u64, track: u64 },
    /// The innermost open slice of `track` ends.
    End { ts: u64, track: u64 },
    /// The current call is an instant.
    Instant { ts: u64, track: u64 },
}

struct Lane {
    uuid: u64,
    /// Ends of the open calls on this lane, innermost last.
    ends: Vec<u64>,
}

pub struct Layout {
    /// tid -> (pid, comm), from the log's thread lines.
    comms: HashMap<u32, (u32, String)>,
    /// pid -> host, when several logs are converted together (their pids numbered apart,
    /// crate::calls::sources): a process track is then named `host pid N (comm)`.
    hosts: Option<HashMap<u32, String>>,
    /// pid -> process track uuid.
    processes: FxHashMap<u32, u64>,
    threads: FxHashMap<(u32, u32), Vec<Lane>>,
    /// The device lanes' (pid, queue, index), by their thread ids' low bits.
    device_lanes: Vec<(u32, u64, u8)>,
    /// Track uuids of the device queues, by (pid, queue), and of their lanes, by number.
    device_queues: FxHashMap<(u32, u64), u64>,
    lane_tracks: FxHashMap<u32, u64>,
    /// Open slices by end: (end, later-begun first, track).
    open: BinaryHeap<Reverse<(u64, Reverse<u64>, u64)>>,
    begun: u64,
    t_first: u64,
    t_last: u64,
    pub tracks: u64,
}

impl Layout {
    /// `t_first`/`t_last`: where calls whose entry predates the log start, and where calls
    /// still open at its end are drawn to.
    pub fn new(
        comms: HashMap<u32, (u32, String)>,
        hosts: Option<HashMap<u32, String>>,
        t_first: u64,
        t_last: u64,
    ) -> Layout {
        Layout {
            comms,
            hosts,
            processes: FxHashMap::default(),
            threads: FxHashMap::default(),
            device_lanes: Vec::new(),
            device_queues: FxHashMap::default(),
            lane_tracks: FxHashMap::default(),
            open: BinaryHeap::new(),
            begun: 0,
            t_first,
            t_last,
            tracks: 0,
        }
    }

    fn comm(&self, tid: u32) -> &str {
        self.comms.get(&tid).map_or("", |c| c.1.as_str())
    }

    /// The device lanes the calls of crate::convert::device are on: each one's (pid, queue,
    /// index), by its thread id's low bits.
    pub fn device_lanes(&mut self, lanes: Vec<(u32, u64, u8)>) {
        self.device_lanes = lanes;
    }

    /// The events that come with `c` (the next call in start order).
    pub fn place(&mut self, c: &Call, out: &mut Vec<TrackEv>) {
        let s = c.start.unwrap_or(self.t_first);
        let e = c.end.unwrap_or(self.t_last).max(s);
        // Slices that ended by now, in end order; at equal ends the later-begun (inner) first,
        // and all before a slice that begins at that same time.
        while let Some(&Reverse((end, _, track))) = self.open.peek() {
            if end > s {
                break;
            }
            self.open.pop();
            out.push(TrackEv::End { ts: end, track });
        }
        // Track uuids are handed out in order, from 1: small numbers, short varints in every
        // event, and the same trace for the same log.
        let p_uuid = self.process(c, out);
        if device::is_device(c) {
            // A device lane: its slices follow each other (crate::convert::device).
            let track = self.lane_track(c, p_uuid, out);
            out.push(TrackEv::Begin { ts: s, track });
            self.open.push(Reverse((e, Reverse(self.begun), track)));
            self.begun += 1;
            return;
        }
        let t_uuid = match self.threads.get(&(c.pid, c.tid)) {
            Some(lanes) => lanes[0].uuid,
            None => {
                self.tracks += 1;
                let t_uuid = self.tracks;
                let mut th = Msg::default();
                th.uint(1, u64::from(c.pid)).uint(2, u64::from(c.tid));
                let comm = self.comm(c.tid);
                if !comm.is_empty() {
                    th.string(5, comm);
                }
                let mut td = Msg::default();
                td.uint(1, t_uuid).uint(5, p_uuid).msg(4, &th);
                out.push(TrackEv::Descriptor(td.buf));
                self.threads.insert(
                    (c.pid, c.tid),
                    vec![Lane {
                        uuid: t_uuid,
                        ends: Vec::new(),
                    }],
                );
                t_uuid
            }
        };
        if c.instant {
            out.push(TrackEv::Instant {
                ts: s,
                track: t_uuid,
            });
            return;
        }
        // Lane 0 is the thread's track; a call that overlaps a lane's open call without
        // nesting in it goes to the next lane (a child track): one LIFO stack per track.
        let lanes = self.threads.get_mut(&(c.pid, c.tid)).expect("added above");
        let mut track = None;
        for lane in lanes.iter_mut() {
            while lane.ends.last().is_some_and(|&end| end <= s) {
                lane.ends.pop();
            }
            if lane.ends.last().is_none_or(|&end| end >= e) {
                lane.ends.push(e);
                track = Some(lane.uuid);
                break;
            }
        }
        let track = match track {
            Some(t) => t,
            None => {
                let n = lanes.len() as u64;
                self.tracks += 1;
                let lane_uuid = self.tracks;
                lanes.push(Lane {
                    uuid: lane_uuid,
                    ends: vec![e],
                });
                let name = format!("{} {} (overlapping calls {n})", self.comm(c.tid), c.tid);
                let mut td = Msg::default();
                td.uint(1, lane_uuid).uint(5, t_uuid).string(2, &name);
                out.push(TrackEv::Descriptor(td.buf));
                lane_uuid
            }
        };
        out.push(TrackEv::Begin { ts: s, track });
        self.open.push(Reverse((e, Reverse(self.begun), track)));
        self.begun += 1;
    }

    /// The track of `c`'s process, described at its first call.
    fn process(&mut self, c: &Call, out: &mut Vec<TrackEv>) -> u64 {
        match self.processes.get(&c.pid) {
            Some(&u) => u,
            None => {
                self.tracks += 1;
                let p_uuid = self.tracks;
                self.processes.insert(c.pid, p_uuid);
                let mut pd = Msg::default();
                pd.uint(1, u64::from(c.pid));
                let comm = self.comm(c.tid);
                match self.hosts.as_ref().and_then(|h| h.get(&c.pid)) {
                    Some(host) => {
                        let pid = c.pid & crate::calls::sources::PID_MASK;
                        let name = if comm.is_empty() {
                            format!("{host} pid {pid}")
                        } else {
                            format!("{host} pid {pid} ({comm})")
                        };
                        pd.string(6, &name);
                    }
                    None if !comm.is_empty() => {
                        pd.string(6, comm);
                    }
                    None => {}
                }
                let mut td = Msg::default();
                td.uint(1, p_uuid).msg(3, &pd);
                out.push(TrackEv::Descriptor(td.buf));
                p_uuid
            }
        }
    }

    /// The track of a device lane, under its queue's track under the process's, described at
    /// its first slice.
    fn lane_track(&mut self, c: &Call, p_uuid: u64, out: &mut Vec<TrackEv>) -> u64 {
        let n = c.tid & !device::LANE_TID;
        if let Some(&u) = self.lane_tracks.get(&n) {
            return u;
        }
        let (pid, queue, index) =
            self.device_lanes
                .get(n as usize)
                .copied()
                .unwrap_or((c.pid, u64::from(n), 0));
        let q_uuid = match self.device_queues.get(&(pid, queue)) {
            Some(&u) => u,
            None => {
                self.tracks += 1;
                let u = self.tracks;
                self.device_queues.insert((pid, queue), u);
                let name = if queue == 0 {
                    "null stream (device, inferred)".to_string()
                } else if let Some(t) = crate::calls::completion::per_thread_of(queue) {
                    let t = t & crate::calls::sources::PID_MASK;
                    format!("default stream of thread {t} (device, inferred)")
                } else {
                    format!("stream {queue:#x} (device, inferred)")
                };
                let mut td = Msg::default();
                td.uint(1, u).uint(5, p_uuid).string(2, &name);
                out.push(TrackEv::Descriptor(td.buf));
                u
            }
        };
        self.tracks += 1;
        let u = self.tracks;
        self.lane_tracks.insert(n, u);
        let mut td = Msg::default();
        td.uint(1, u)
            .uint(5, q_uuid)
            .string(2, &format!("lane {index}"));
        out.push(TrackEv::Descriptor(td.buf));
        u
    }

    /// The ends of the slices still open, after the last call.
    pub fn finish(&mut self, out: &mut Vec<TrackEv>) {
        while let Some(Reverse((end, _, track))) = self.open.pop() {
            out.push(TrackEv::End { ts: end, track });
        }
    }
}
