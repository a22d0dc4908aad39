//! The trace files' side run on a thread of its own: with several cores, the encoding (one
//! pass over the calls in start order, on the converter's main thread) hands each packet's
//! shared parts and edges over in batches, and this thread adds each file's flows and
//! assembles the packets into the files' writers (files.rs). On the 268 MB bench log that
//! side is a quarter of the traces' work, taken off the thread that bounds the write phase.
//! The files get the same packets in the same order either way: the same bytes.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::files::{Files, Packet, Parts};
use super::flows::Edges;
use super::TraceSummary;
use crate::convert::worker::Worker;

/// Bytes of packet parts a batch holds before it is handed over.
const BATCH: usize = 256 << 10;
const IN_FLIGHT: usize = 2;
/// A packet without a track event (the `te` length of its record).
const NO_TE: u32 = u32::MAX;

/// Where the encoding's packets go: into the files here, or to their thread.
pub enum Output {
    Here(Files),
    Beside(FilesThread),
}

impl Output {
    /// `files`: each file's path, its file, and the link keys it draws; `direct_io`: written
    /// with direct I/O where their file system takes it; `beside`: on a thread of their own.
    pub fn new(files: Vec<(PathBuf, File, Vec<u32>)>, direct_io: bool, beside: bool) -> Output {
        let files = Files::new(files, direct_io);
        if beside {
            Output::Beside(FilesThread::start(files))
        } else {
            Output::Here(files)
        }
    }

    pub fn write(&mut self, p: &Packet) -> io::Result<()> {
        match self {
            Output::Here(f) => f.write(p),
            Output::Beside(t) => t.write(p),
        }
    }

    /// Flushes the files and waits for their writers; `tracks`: the tracks the traces have.
    pub fn finish(self, tracks: u64) -> io::Result<Vec<(PathBuf, TraceSummary)>> {
        match self {
            Output::Here(f) => f.finish(tracks),
            Output::Beside(t) => t.finish()?.finish(tracks),
        }
    }
}

/// One packet of a batch: the lengths of its parts (in the batch's bytes, one after the
/// other) and how many of the batch's edges are its.
struct Rec {
    pre: u32,
    te: u32,
    post: u32,
    edges: u32,
    device_flow: Option<(u64, bool)>,
    begin: bool,
}

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    edges: Vec<Edges>,
    recs: Vec<Rec>,
}

impl Batch {
    fn push(&mut self, p: &Packet) {
        let mut put = |b: &[u8]| {
            self.bytes.extend_from_slice(b);
            b.len() as u32
        };
        let pre = put(p.parts.pre);
        let te = p.parts.te.map_or(NO_TE, &mut put);
        let post = put(p.parts.post);
        self.edges.extend_from_slice(p.edges);
        self.recs.push(Rec {
            pre,
            te,
            post,
            edges: p.edges.len() as u32,
            device_flow: p.device_flow,
            begin: p.begin,
        });
    }

    /// Writes the batch's packets into `files`, in order.
    fn write_into(&self, files: &mut Files) -> io::Result<()> {
        let (mut at, mut edge) = (0, 0);
        for r in &self.recs {
            let pre = piece(&self.bytes, &mut at, r.pre);
            let te = (r.te != NO_TE).then(|| piece(&self.bytes, &mut at, r.te));
            let post = piece(&self.bytes, &mut at, r.post);
            let edges = &self.edges[edge..edge + r.edges as usize];
            edge += edges.len();
            files.write(&Packet {
                parts: Parts { pre, te, post },
                edges,
                device_flow: r.device_flow,
                begin: r.begin,
            })?;
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.edges.clear();
        self.recs.clear();
    }
}

/// The `len` bytes at `*at`, moving `at` past them.
fn piece<'a>(bytes: &'a [u8], at: &mut usize, len: u32) -> &'a [u8] {
    let s = &bytes[*at..*at + len as usize];
    *at += s.len();
    s
}

/// The files written by a thread of their own, fed batches of packets.
pub struct FilesThread {
    batch: Batch,
    thread: Worker<Batch, Files>,
}

impl FilesThread {
    pub fn start(files: Files) -> FilesThread {
        let thread = Worker::start(
            "trace files'",
            IN_FLIGHT,
            files,
            |files, b: &mut Batch| {
                b.write_into(files)?;
                b.clear();
                Ok(())
            },
            Ok,
        );
        FilesThread {
            batch: Batch::default(),
            thread,
        }
    }

    pub fn write(&mut self, p: &Packet) -> io::Result<()> {
        self.batch.push(p);
        if self.batch.bytes.len() >= BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self.thread.spare().unwrap_or_default();
        let full = std::mem::replace(&mut self.batch, next);
        self.thread.send(full)
    }

    /// Hands over what is left and waits for the thread: the files, every packet in them.
    pub fn finish(mut self) -> io::Result<Files> {
        if !self.batch.recs.is_empty() {
            self.send()?;
        }
        let stopped = self.thread.stopped();
        self.thread.join().unwrap_or(Err(stopped))
    }
}

#[cfg(test)]
mod tests {
    use super::super::flows::Join;
    use super::*;

    /// Packets with and without a track event, with edges and device flows, over several
    /// batches: the files written beside get the bytes the files written here get.
    #[test]
    fn beside_writes_what_here_writes() {
        let dir = std::env::temp_dir().join(format!("bthost-handoff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |tag: &str, beside: bool| {
            let files = [("a", vec![1u32]), ("b", vec![1, 2])]
                .iter()
                .map(|(n, keys)| {
                    let path = dir.join(format!("{tag}-{n}"));
                    (path.clone(), File::create(&path).unwrap(), keys.clone())
                })
                .collect();
            let mut out = Output::new(files, false, beside);
            // Enough packets for several batches.
            let mut fed = 0;
            for i in 0..100_000u64 {
                let pre = [8u8, (i % 120) as u8];
                let te = vec![72u8; (i % 7) as usize];
                let post = [80u8, 1];
                fed += pre.len() + post.len() + if i % 5 != 0 { te.len() } else { 0 };
                let edges = [
                    Edges {
                        key: 1,
                        join: Join::Step(i),
                    },
                    Edges {
                        key: 2,
                        join: Join::End(i + 1),
                    },
                ];
                out.write(&Packet {
                    parts: Parts {
                        pre: &pre,
                        te: (i % 5 != 0).then_some(te.as_slice()),
                        post: &post,
                    },
                    edges: &edges[..(i % 3) as usize],
                    device_flow: (i % 4 == 0).then_some((i, i % 8 == 0)),
                    begin: i % 2 == 0,
                })
                .unwrap();
            }
            assert!(fed > 2 * BATCH, "several batches: {fed} bytes");
            out.finish(3).unwrap()
        };
        let here = write("here", false);
        let beside = write("beside", true);
        for ((p1, s1), (p2, s2)) in here.iter().zip(&beside) {
            let (b1, b2) = (std::fs::read(p1).unwrap(), std::fs::read(p2).unwrap());
            assert_eq!(b1, b2, "{} vs {}", p1.display(), p2.display());
            assert_eq!(s1, s2);
        }
        assert!(here[0].1.flows > 0 && here[0].1.slices == 50_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
