//! Calls into start order with bounded memory. bpftrace writes a call when it returns, so a
//! long call (a hung collective, a 10 s init) comes after everything that started inside it:
//! no window of bounded size can reorder that. Calls are kept in memory up to a budget, then
//! sorted and spilled as a run to a file beside the outputs; at the end the runs are merged.
//! A log that fits the budget never touches the disk.

use crate::safe_out::OutDir;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};

use super::bgwrite::BgWriter;
use crate::calls::call::{key_of, Call, Key, Strings};
use crate::calls::CallSink;

pub struct Sorter {
    dir: OutDir,
    budget: usize,
    arena: Vec<u8>,
    /// (key, offset, length) of each call in `arena`.
    index: Vec<(Key, u32, u32)>,
    /// The spilled runs' file names in `dir`.
    runs: Vec<String>,
    /// The last run, still being written by its thread while the next one fills.
    writing: Option<BgWriter>,
}

impl Sorter {
    /// Spills to files in `dir` when the calls held take more than `budget` bytes.
    pub fn new(dir: &OutDir, budget: usize) -> Sorter {
        Sorter {
            dir: dir.clone(),
            budget,
            arena: Vec::new(),
            index: Vec::new(),
            runs: Vec::new(),
            writing: None,
        }
    }

    /// Adds one encoded call (see `call.rs`).
    pub fn push(&mut self, call: &[u8]) -> io::Result<()> {
        let off = self.arena.len();
        self.arena.extend_from_slice(call);
        self.index
            .push((key_of(call), off as u32, call.len() as u32));
        if self.arena.len() + self.index.len() * 32 >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// How many runs went to disk (0: everything stayed in memory).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> io::Result<()> {
        self.index.sort_unstable_by_key(|e| e.0);
        let name = format!(
            ".bthost-sort-{}-{}.tmp",
            std::process::id(),
            self.runs.len()
        );
        if let Some(prev) = self.writing.take() {
            prev.finish()?;
        }
        let mut w = BgWriter::new(self.dir.create_file(&name).map_err(io::Error::other)?);
        self.runs.push(name);
        for &(_, off, len) in &self.index {
            w.write_all(&len.to_le_bytes())?;
            w.write_all(&self.arena[off as usize..(off + len) as usize])?;
        }
        w.flush()?;
        self.writing = Some(w);
        self.arena.clear();
        self.index.clear();
        Ok(())
    }

    /// Calls every encoded call in key order.
    pub fn drain(mut self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        if let Some(prev) = self.writing.take() {
            prev.finish()?;
        }
        self.index.sort_unstable_by_key(|e| e.0);
        if self.runs.is_empty() {
            for &(_, off, len) in &self.index {
                each(&self.arena[off as usize..(off + len) as usize])?;
            }
            return Ok(());
        }
        // The calls still in memory are one more run, merged with those on disk.
        let mut sources: Vec<Source> = Vec::new();
        for p in &self.runs {
            sources.push(Source::File(BufReader::with_capacity(
                256 << 10,
                self.dir.open_file(p)?,
            )));
        }
        sources.push(Source::Memory(0));
        let mut heads: Vec<Vec<u8>> = vec![Vec::new(); sources.len()];
        let mut heap = BinaryHeap::new();
        for (i, src) in sources.iter_mut().enumerate() {
            if src.next(&mut heads[i], &self.arena, &self.index)? {
                heap.push(std::cmp::Reverse((key_of(&heads[i]), i)));
            }
        }
        while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
            each(&heads[i])?;
            if sources[i].next(&mut heads[i], &self.arena, &self.index)? {
                heap.push(std::cmp::Reverse((key_of(&heads[i]), i)));
            }
        }
        Ok(())
    }
}

impl Drop for Sorter {
    fn drop(&mut self) {
        for p in &self.runs {
            let _ = self.dir.remove_file(p);
        }
    }
}

enum Source {
    File(BufReader<File>),
    /// The next position in the in-memory index.
    Memory(usize),
}

impl Source {
    /// Reads the next call into `head`; false at the end.
    fn next(
        &mut self,
        head: &mut Vec<u8>,
        arena: &[u8],
        index: &[(Key, u32, u32)],
    ) -> io::Result<bool> {
        match self {
            Source::File(r) => {
                let mut len = [0u8; 4];
                match r.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                    Err(e) => return Err(e),
                }
                head.resize(u32::from_le_bytes(len) as usize, 0);
                r.read_exact(head)?;
                Ok(true)
            }
            Source::Memory(pos) => {
                let Some(&(_, off, len)) = index.get(*pos) else {
                    return Ok(false);
                };
                *pos += 1;
                head.clear();
                head.extend_from_slice(&arena[off as usize..(off + len) as usize]);
                Ok(true)
            }
        }
    }
}

/// The reading pass hands the sorter each finished call, encoded.
pub struct SortSink {
    pub sorter: Sorter,
    buf: Vec<u8>,
}

impl SortSink {
    pub fn new(sorter: Sorter) -> SortSink {
        SortSink {
            sorter,
            buf: Vec::with_capacity(256),
        }
    }
}

impl CallSink for SortSink {
    fn see(&mut self, c: &Call, _: &Strings) -> io::Result<()> {
        self.buf.clear();
        c.encode(&mut self.buf);
        self.sorter.push(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::call::Call;

    fn sorted_starts(budget: usize, starts: &[u64]) -> (Vec<u64>, usize) {
        let dir = std::env::temp_dir().join(format!("bthost-sort-test-{budget}"));
        let out = OutDir::create(&dir).unwrap();
        let mut s = Sorter::new(&out, budget);
        let mut b = Vec::new();
        for (seq, &st) in starts.iter().enumerate() {
            b.clear();
            Call {
                start: Some(st),
                end: Some(st + 10),
                seq: seq as u64,
                ..Call::default()
            }
            .encode(&mut b);
            s.push(&b).unwrap();
        }
        let runs = s.runs();
        let mut out = Vec::new();
        let mut c = Call::default();
        s.drain(|b| {
            c.decode(b);
            out.push(c.start.unwrap());
            Ok(())
        })
        .unwrap();
        let left = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".bthost-sort")
            })
            .count();
        assert_eq!(left, 0, "run files are removed");
        (out, runs)
    }

    #[test]
    fn sorts_in_memory_and_across_spilled_runs() {
        let starts: Vec<u64> = (0..5000u64).map(|i| (i * 7919) % 5003).collect();
        let mut want = starts.clone();
        want.sort();
        let (got, runs) = sorted_starts(1 << 30, &starts);
        assert_eq!((got, runs), (want.clone(), 0));
        let (got, runs) = sorted_starts(8 << 10, &starts);
        assert!(runs > 10, "{runs} runs");
        assert_eq!(got, want);
    }
}
