//! The trace files' side of the encoding: each packet is encoded once for all the files
//! (mod.rs), and each file adds its own flows to it and writes it through its own writer
//! thread (bgwrite.rs).

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::flows::{Edges, Join};
use super::proto::{varint, Msg};
use super::{TraceSummary, P_TRACK_EVENT, TE_FLOW_IDS, TE_TERMINATING_FLOW_IDS};
use crate::convert::bgwrite::BgWriter;

/// The encoded parts of one packet that every file shares.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    /// Fields before the track event (the timestamp).
    pub pre: &'a [u8],
    /// The track event's common fields, if the packet has one.
    pub te: Option<&'a [u8]>,
    /// Fields after it (interned data, descriptor, sequence fields).
    pub post: &'a [u8],
}

impl Parts<'_> {
    /// Appends the whole `Trace.packet` record to `out`, with `flows` added to the track
    /// event.
    pub fn assemble(&self, flows: &[u8], out: &mut Vec<u8>) {
        let inner = self.te.map_or(0, |te| te.len() + flows.len());
        // The track event's key (field 11, length-delimited: one byte) and length.
        let te_len = self
            .te
            .map_or(0, |_| 1 + crate::calls::varint::len(inner as u64) + inner);
        let len = self.pre.len() + te_len + self.post.len();
        out.push(0x0a); // Trace.packet, length-delimited
        varint(out, len as u64);
        out.extend_from_slice(self.pre);
        if let Some(te) = self.te {
            out.push((P_TRACK_EVENT << 3 | 2) as u8);
            varint(out, inner as u64);
            out.extend_from_slice(te);
            out.extend_from_slice(flows);
        }
        out.extend_from_slice(self.post);
    }
}

/// One packet as the files get it: the shared parts, and what each file picks its flows from.
#[derive(Clone, Copy)]
pub struct Packet<'a> {
    pub parts: Parts<'a>,
    /// The call's joins on every chosen key; each file keeps those of its keys.
    pub edges: &'a [Edges],
    /// The call's flow to or from its device slice (id, whether it ends here), in every file.
    pub device_flow: Option<(u64, bool)>,
    /// A slice begins here (counted in each file's summary).
    pub begin: bool,
}

struct TraceFile {
    path: PathBuf,
    w: BgWriter,
    /// The link keys (string ids) whose flows this file draws.
    keys: Vec<u32>,
    summary: TraceSummary,
}

/// The trace files, each written through its own writer thread (bgwrite.rs).
pub struct Files {
    files: Vec<TraceFile>,
    flow_bytes: Msg,
}

impl Files {
    /// `files`: each file's path, its file, and the link keys it draws.
    pub fn new(files: Vec<(PathBuf, File, Vec<u32>)>, direct_io: bool) -> Files {
        Files {
            files: files
                .into_iter()
                .map(|(path, f, keys)| TraceFile {
                    w: BgWriter::output(f, direct_io),
                    path,
                    keys,
                    summary: TraceSummary::default(),
                })
                .collect(),
            flow_bytes: Msg::default(),
        }
    }

    /// Writes `p` into every file, with that file's flows.
    pub fn write(&mut self, p: &Packet) -> io::Result<()> {
        for f in &mut self.files {
            let flows = &mut self.flow_bytes;
            flows.clear();
            let mine = || p.edges.iter().filter(|e| f.keys.contains(&e.key));
            for e in mine() {
                if let Join::Begin(id) | Join::Step(id) = e.join {
                    flows.fixed64(TE_FLOW_IDS, id);
                }
                f.summary.flows += u64::from(e.join.arrow_in());
            }
            if let Some((id, false)) = p.device_flow {
                flows.fixed64(TE_FLOW_IDS, id);
                f.summary.flows += 1;
            }
            for e in mine() {
                if let Join::End(id) = e.join {
                    flows.fixed64(TE_TERMINATING_FLOW_IDS, id);
                }
            }
            if let Some((id, true)) = p.device_flow {
                flows.fixed64(TE_TERMINATING_FLOW_IDS, id);
            }
            if p.begin {
                f.summary.slices += 1;
            }
            // Straight into the writer's buffer: assembling it there costs what copying an
            // assembled packet would, so one copy of the packet per file, not two.
            f.w.append(|out| p.parts.assemble(&flows.buf, out))?;
        }
        Ok(())
    }

    /// Flushes the files and waits for their writers; `tracks`: the tracks the traces have.
    pub fn finish(self, tracks: u64) -> io::Result<Vec<(PathBuf, TraceSummary)>> {
        self.files
            .into_iter()
            .map(|mut f| {
                f.w.finish()?;
                f.summary.tracks = tracks;
                Ok((f.path, f.summary))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three files drawing key 1, key 2 and both: each gets the shared packet, its own keys'
    /// flows and every device flow, and counts them.
    #[test]
    fn each_file_adds_only_its_own_flows() {
        let dir = std::env::temp_dir().join(format!("bthost-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let specs = [("a", vec![1u32]), ("b", vec![2]), ("c", vec![1, 2])];
        let files = specs
            .iter()
            .map(|(n, keys)| {
                let path = dir.join(n);
                (path.clone(), File::create(&path).unwrap(), keys.clone())
            })
            .collect();
        let mut files = Files::new(files, false);
        let (pre, te, post) = ([8u8, 5], [72u8, 1], [80u8, 1]);
        let parts = Parts {
            pre: &pre,
            te: Some(&te),
            post: &post,
        };
        let edges = [
            Edges {
                key: 1,
                join: Join::Step(7),
            },
            Edges {
                key: 2,
                join: Join::End(9),
            },
        ];
        files
            .write(&Packet {
                parts,
                edges: &edges,
                device_flow: Some((3, false)),
                begin: true,
            })
            .unwrap();
        let summaries = files.finish(4).unwrap();
        let flow = |field: u32, id: u64| {
            let mut m = Msg::default();
            m.fixed64(field, id);
            m.buf
        };
        let (step7, end9, dev3) = (
            flow(TE_FLOW_IDS, 7),
            flow(TE_TERMINATING_FLOW_IDS, 9),
            flow(TE_FLOW_IDS, 3),
        );
        let expect = [
            [step7.clone(), dev3.clone()].concat(),
            [dev3.clone(), end9.clone()].concat(),
            [step7, dev3, end9].concat(),
        ];
        for ((path, summary), flows) in summaries.iter().zip(&expect) {
            let mut want = Vec::new();
            parts.assemble(flows, &mut want);
            assert_eq!(std::fs::read(path).unwrap(), want, "{}", path.display());
            assert_eq!((summary.slices, summary.tracks), (1, 4));
        }
        // Flows counted where an arrow comes in (a step, an end, the device's), once each.
        let counted: Vec<u64> = summaries.iter().map(|(_, s)| s.flows).collect();
        assert_eq!(counted, [2, 2, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
