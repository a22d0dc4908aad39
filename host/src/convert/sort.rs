//! Calls into start order with bounded memory. bpftrace writes a call when it returns, so a
//! long call (a hung collective, a 10 s init) comes after everything that started inside it:
//! no window of bounded size can reorder that. Calls are kept in memory up to a budget, then
//! sorted and spilled as a run to a file beside the outputs; at the end the runs are merged.
//! A log that fits the budget never touches the disk.
//!
//! The writers read two orders of the same calls: start order across all threads (the
//! Perfetto traces) and thread by thread, each thread in start order (the text log). So every
//! run, in memory or spilled, is sorted by thread and then by key, and knows where each
//! thread's calls are in it (a segment): start order merges every (run, thread) segment, one
//! thread's calls merge its segment of each run. The text log then streams into its file as
//! the traces do: nothing of it is held or spilled, and the two orders are read side by side,
//! on two threads, from one [`Sorted`].

use crate::safe_out::OutDir;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use super::bgwrite::BgWriter;
use crate::calls::call::{key_of, thread_of, Call, Key, Strings};
use crate::calls::CallSink;

/// A call's (pid, tid).
pub type Thread = (u32, u32);

/// The device side's lanes (crate::convert::device), thousands of them, not threads of the
/// program: their calls sort as one group, after every thread's, so that a spilled run has a
/// segment per thread and one for them all, not one per lane.
const LANES: Thread = (u32::MAX, u32::MAX);

fn group_of(call: &[u8]) -> Thread {
    let t = thread_of(call);
    if super::device::is_lane(t.1) {
        LANES
    } else {
        t
    }
}

/// One call held in memory: where it is in the arena, and what it sorts by.
struct Entry {
    thread: Thread,
    key: Key,
    off: u32,
    len: u32,
}

/// What the budget counts for each call besides its bytes.
const ENTRY_COST: usize = std::mem::size_of::<Entry>();

/// One thread's calls in a spilled run: a byte range of its file.
struct Segment {
    thread: Thread,
    off: u64,
    end: u64,
}

struct Run {
    name: String,
    segments: Vec<Segment>,
}

pub struct Sorter {
    dir: OutDir,
    budget: usize,
    arena: Vec<u8>,
    index: Vec<Entry>,
    runs: Vec<Run>,
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
        // Grown by hand, up to the budget, and spilled when they cannot grow: a doubling
        // vector would hold up to twice the budget.
        let arena_full = self.arena.len() + call.len() > self.arena.capacity();
        let index_full = self.index.len() == self.index.capacity();
        if arena_full || index_full {
            let held = self.arena.capacity() + self.index.capacity() * ENTRY_COST;
            let room = self.budget.saturating_sub(held);
            let step = (64 << 10).min(self.budget / 4).max(ENTRY_COST);
            if room < step && !self.index.is_empty() {
                self.spill()?;
            } else if arena_full {
                let more = self.arena.capacity().clamp(step, room.max(step));
                self.arena.reserve_exact(more.max(call.len()));
            } else {
                let more = (self.index.capacity() * ENTRY_COST).clamp(step, room.max(step));
                self.index.reserve_exact(more / ENTRY_COST);
            }
        }
        let off = self.arena.len();
        self.arena.extend_from_slice(call);
        self.index.push(Entry {
            thread: group_of(call),
            key: key_of(call),
            off: off as u32,
            len: call.len() as u32,
        });
        Ok(())
    }

    /// How many runs went to disk (0: everything stayed in memory).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn sort(&mut self) {
        self.index.sort_unstable_by_key(|e| (e.thread, e.key));
    }

    fn spill(&mut self) -> io::Result<()> {
        self.sort();
        let name = format!(
            ".bthost-sort-{}-{}.tmp",
            std::process::id(),
            self.runs.len()
        );
        if let Some(prev) = self.writing.take() {
            prev.finish()?;
        }
        let mut w = BgWriter::new(self.dir.create_file(&name).map_err(io::Error::other)?);
        let mut run = Run {
            name,
            segments: Vec::new(),
        };
        let mut at = 0u64;
        for e in &self.index {
            if run.segments.last().is_none_or(|s| s.thread != e.thread) {
                run.segments.push(Segment {
                    thread: e.thread,
                    off: at,
                    end: at,
                });
            }
            w.write_all(&e.len.to_le_bytes())?;
            w.write_all(&self.arena[e.off as usize..(e.off + e.len) as usize])?;
            at += 4 + u64::from(e.len);
            run.segments.last_mut().expect("pushed above").end = at;
        }
        w.flush()?;
        self.runs.push(run);
        self.writing = Some(w);
        self.arena.clear();
        self.index.clear();
        Ok(())
    }

    /// Every call is in: the runs, complete, ready to be read in either order.
    pub fn finish(mut self) -> io::Result<Sorted> {
        if let Some(prev) = self.writing.take() {
            prev.finish()?;
        }
        self.sort();
        let mut memory: Vec<(Thread, Range<usize>)> = Vec::new();
        for (i, e) in self.index.iter().enumerate() {
            match memory.last_mut() {
                Some((t, r)) if *t == e.thread => r.end = i + 1,
                _ => memory.push((e.thread, i..i + 1)),
            }
        }
        let mut files = Vec::new();
        for run in &self.runs {
            files.push(self.dir.open_file(&run.name)?);
        }
        Ok(Sorted {
            dir: self.dir.clone(),
            arena: std::mem::take(&mut self.arena),
            index: std::mem::take(&mut self.index),
            memory,
            files,
            runs: std::mem::take(&mut self.runs),
        })
    }
}

impl Drop for Sorter {
    fn drop(&mut self) {
        remove_runs(&self.dir, &self.runs);
    }
}

fn remove_runs(dir: &OutDir, runs: &[Run]) {
    for r in runs {
        let _ = dir.remove_file(&r.name);
    }
}

/// The sorted calls: read in start order ([`Sorted::in_key_order`]) and thread by thread
/// ([`Sorted::by_thread`]), each any number of times and from several threads at once.
pub struct Sorted {
    dir: OutDir,
    arena: Vec<u8>,
    index: Vec<Entry>,
    /// Each thread's calls in `index`.
    memory: Vec<(Thread, Range<usize>)>,
    /// The spilled runs, open, as `runs` names them.
    files: Vec<File>,
    runs: Vec<Run>,
}

/// Bytes of read buffers for all the spilled segments one reader merges; each gets a share,
/// between the bounds below.
const READ_BUDGET: usize = 8 << 20;
const MIN_BUF: usize = 4 << 10;
const MAX_BUF: usize = 256 << 10;

impl Sorted {
    /// The threads that have calls, in (pid, tid) order (the device lanes as one, last).
    pub fn threads(&self) -> Vec<Thread> {
        let mut all: Vec<Thread> = self.memory.iter().map(|m| m.0).collect();
        for r in &self.runs {
            all.extend(r.segments.iter().map(|s| s.thread));
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    /// A cursor on each of these spilled segments and in-memory ranges.
    fn cursors<'a>(
        &'a self,
        files: impl Iterator<Item = (usize, &'a Segment)>,
        memory: impl Iterator<Item = &'a Range<usize>>,
        spilled: usize,
    ) -> Vec<Cursor<'a>> {
        let buf = (READ_BUDGET / spilled.max(1)).clamp(MIN_BUF, MAX_BUF);
        let mut out: Vec<Cursor> = files
            .map(|(run, s)| {
                Cursor::File(FileCursor {
                    file: &self.files[run],
                    next: s.off,
                    end: s.end,
                    buf: Vec::with_capacity(buf),
                    cap: buf,
                    pos: 0,
                    head: 0..0,
                })
            })
            .collect();
        out.extend(memory.map(|r| Cursor::Memory {
            arena: &self.arena,
            index: &self.index[r.clone()],
            head: 0..0,
        }));
        out
    }

    /// Calls every encoded call in key (start) order.
    pub fn in_key_order(&self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let spilled: usize = self.runs.iter().map(|r| r.segments.len()).sum();
        let files = self
            .runs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.segments.iter().map(move |s| (i, s)));
        let cursors = self.cursors(files, self.memory.iter().map(|m| &m.1), spilled);
        merge(cursors, &mut each)
    }

    /// Calls every encoded call, thread by thread in (pid, tid) order, each thread's in key
    /// order; the device lanes' calls last, together (as thread `(u32::MAX, u32::MAX)`).
    pub fn by_thread(
        &self,
        mut each: impl FnMut(Thread, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        // Each run's segments are in thread order: one position per run walks them all.
        let mut at = vec![0usize; self.runs.len()];
        let mut mem_at = 0;
        for t in self.threads() {
            let mut files = Vec::new();
            for (i, r) in self.runs.iter().enumerate() {
                if let Some(s) = r.segments.get(at[i]).filter(|s| s.thread == t) {
                    files.push((i, s));
                    at[i] += 1;
                }
            }
            let mut memory = Vec::new();
            if let Some(m) = self.memory.get(mem_at).filter(|m| m.0 == t) {
                memory.push(&m.1);
                mem_at += 1;
            }
            let spilled = files.len();
            let cursors = self.cursors(files.into_iter(), memory.into_iter(), spilled);
            merge(cursors, &mut |b: &[u8]| each(t, b))?;
        }
        Ok(())
    }
}

impl Drop for Sorted {
    fn drop(&mut self) {
        remove_runs(&self.dir, &self.runs);
    }
}

/// Calls `each` with the cursors' calls in key order (each cursor's already are).
fn merge(
    mut cursors: Vec<Cursor>,
    each: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    if let [one] = cursors.as_mut_slice() {
        while one.advance()? {
            each(one.head())?;
        }
        return Ok(());
    }
    let mut heap = BinaryHeap::with_capacity(cursors.len());
    for (i, c) in cursors.iter_mut().enumerate() {
        if c.advance()? {
            heap.push(Reverse((key_of(c.head()), i)));
        }
    }
    // The least head is replaced in place (one sift) rather than popped and pushed (two).
    while let Some(mut top) = heap.peek_mut() {
        let i = top.0 .1;
        let c = &mut cursors[i];
        each(c.head())?;
        if c.advance()? {
            *top = Reverse((key_of(c.head()), i));
        } else {
            std::collections::binary_heap::PeekMut::pop(top);
        }
    }
    Ok(())
}

/// A reader of one sorted sequence of calls.
enum Cursor<'a> {
    Memory {
        arena: &'a [u8],
        /// The calls not yet read.
        index: &'a [Entry],
        head: Range<usize>,
    },
    File(FileCursor<'a>),
}

impl Cursor<'_> {
    /// Moves to the next call; false at the end.
    fn advance(&mut self) -> io::Result<bool> {
        match self {
            Cursor::Memory { index, head, .. } => match index.split_first() {
                Some((e, rest)) => {
                    *head = e.off as usize..(e.off + e.len) as usize;
                    *index = rest;
                    Ok(true)
                }
                None => Ok(false),
            },
            Cursor::File(f) => f.advance(),
        }
    }

    /// The current call's bytes.
    fn head(&self) -> &[u8] {
        match self {
            Cursor::Memory { arena, head, .. } => &arena[head.clone()],
            Cursor::File(f) => &f.buf[f.head.clone()],
        }
    }
}

/// A spilled segment, read in buffers of `cap` bytes with positioned reads (the file is
/// shared by every cursor on it, and by the other order's reader).
struct FileCursor<'a> {
    file: &'a File,
    /// The file offset of the first byte not yet in `buf`, and the segment's end.
    next: u64,
    end: u64,
    buf: Vec<u8>,
    cap: usize,
    /// Where the next call starts in `buf`, and the current call.
    pos: usize,
    head: Range<usize>,
}

impl FileCursor<'_> {
    fn advance(&mut self) -> io::Result<bool> {
        if !self.ensure(4)? {
            return Ok(false);
        }
        let len_at = self.pos;
        let len =
            u32::from_le_bytes(self.buf[len_at..len_at + 4].try_into().expect("4 bytes")) as usize;
        if !self.ensure(4 + len)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a sorted run is shorter than written",
            ));
        }
        self.head = self.pos + 4..self.pos + 4 + len;
        self.pos += 4 + len;
        Ok(true)
    }

    /// Makes `n` bytes from `pos` available in `buf`; false if the segment has fewer.
    fn ensure(&mut self, n: usize) -> io::Result<bool> {
        let have = self.buf.len() - self.pos;
        if have >= n {
            return Ok(true);
        }
        let left = (self.end - self.next) as usize;
        if have + left < n {
            return Ok(false);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let take = left.min(self.cap.max(n) - have);
        let at = self.buf.len();
        self.buf.resize(at + take, 0);
        self.file.read_exact_at(&mut self.buf[at..], self.next)?;
        self.next += take as u64;
        Ok(true)
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

    /// The calls' (tid, start) in start order and thread by thread, and the runs spilled.
    fn sorted(budget: usize, calls: &[(u32, u64)]) -> (Vec<u64>, Vec<(u32, u64)>, usize) {
        let dir = std::env::temp_dir().join(format!("bthost-sort-test-{budget}"));
        let out = OutDir::create(&dir).unwrap();
        let mut s = Sorter::new(&out, budget);
        let mut b = Vec::new();
        for (seq, &(tid, st)) in calls.iter().enumerate() {
            b.clear();
            Call {
                start: Some(st),
                end: Some(st + 10),
                seq: seq as u64,
                pid: 1,
                tid,
                ..Call::default()
            }
            .encode(&mut b);
            s.push(&b).unwrap();
        }
        let runs = s.runs();
        let sorted = s.finish().unwrap();
        let mut starts = Vec::new();
        let mut c = Call::default();
        sorted
            .in_key_order(|b| {
                c.decode(b);
                starts.push(c.start.unwrap());
                Ok(())
            })
            .unwrap();
        let mut by_thread = Vec::new();
        sorted
            .by_thread(|t, b| {
                c.decode(b);
                assert_eq!(t, (c.pid, c.tid));
                by_thread.push((c.tid, c.start.unwrap()));
                Ok(())
            })
            .unwrap();
        drop(sorted);
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
        (starts, by_thread, runs)
    }

    #[test]
    fn sorts_in_memory_and_across_spilled_runs_in_both_orders() {
        let calls: Vec<(u32, u64)> = (0..5000u64)
            .map(|i| ((i % 7) as u32 + 1, (i * 7919) % 5003))
            .collect();
        let mut want = calls.iter().map(|c| c.1).collect::<Vec<_>>();
        want.sort();
        let mut want_threads = calls.clone();
        want_threads.sort();
        let (got, threads, runs) = sorted(1 << 30, &calls);
        assert_eq!((&got, &threads, runs), (&want, &want_threads, 0));
        let (got, threads, runs) = sorted(8 << 10, &calls);
        assert!(runs > 10, "{runs} runs");
        assert_eq!(got, want);
        assert_eq!(threads, want_threads);
    }
}
