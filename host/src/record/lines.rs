//! What `record` does with each line bpftrace prints, on a thread of its own: most go to the
//! log; the script's answers to record's requests (crate::compose::hooks) are also told to the
//! main thread; a thread's first line, a `dlopen` and a process held at its exit make a copy of
//! its memory map; the flight recorder's status spans go to the hang watch only; a record that
//! an earlier dump of the ring already wrote, or a call in flight that the last drain already
//! listed, is not written again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::maps::MapsKeeper;
use super::sentinel::Channel;
use crate::compose::hooks::ATTACHED_LINE;
use crate::log::anchor::Anchor;

/// The dump that ends tracing: after its `#Z`, the log is complete and closed.
pub const FINAL_DUMP: u64 = 0xffff_ffff;

/// The mark that ends a log whose tracing stopped before the last dump (bpftrace exited or
/// was killed): `#Q <time> <why>`, time in bpftrace's clock (CLOCK_MONOTONIC, ns, hex).
pub const EARLY_MARK: &str = "#Q";

/// What the main thread tells the line thread of bpftrace's end.
#[derive(Default)]
pub struct Ending {
    /// bpftrace is gone (or going): once its pipe is empty, its output has ended (a killed
    /// bpftrace's pipe stays open until the kernel has unregistered its probes, for minutes).
    pub gone: AtomicBool,
    /// record is stopping bpftrace itself: the end of its output is not early.
    pub stopping: AtomicBool,
    /// Why and when (CLOCK_MONOTONIC, ns) tracing stopped early: the log's `#Q` mark, or the
    /// start of its `#G` gap when record runs bpftrace again.
    pub why: Mutex<Option<(u64, String)>>,
    /// record runs bpftrace again (`--restart`): at the end of this one's output the line
    /// thread waits for the next one's ([`Resume`]) instead of closing the log.
    pub restarting: AtomicBool,
}

impl Ending {
    pub fn stopped_early(&self, why: String) {
        if let Ok(mut w) = self.why.lock() {
            w.get_or_insert((monotonic_ns(), why));
        }
        self.gone.store(true, Ordering::SeqCst);
    }

    /// bpftrace ended early and record starts it again: the log goes on after a gap.
    pub fn restart(&self, why: String) {
        self.restarting.store(true, Ordering::SeqCst);
        self.stopped_early(why);
    }
}

/// What follows the end of a bpftrace's output that record restarts.
pub enum Resume<R> {
    /// The new bpftrace's output: the log goes on from its attach, after a `#G` gap mark.
    Run { out: R, ending: Arc<Ending> },
    /// It could not be started (or died as quickly again): the log ends with a `#Q` mark
    /// that says so.
    GiveUp(String),
}

/// The mark of a gap in a log: `#G <from> <to> <why>` (times as `#Q`'s): tracing stopped at
/// `from` and went on at `to`.
pub const GAP_MARK: &str = "#G";

pub fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime fills a timespec.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// bpftrace's stdout, read so that the read ends when [`Ending::gone`] says so and the pipe
/// is empty.
pub struct Polled<R> {
    inner: R,
    ending: Arc<Ending>,
}

impl<R> Polled<R> {
    pub fn new(inner: R, ending: Arc<Ending>) -> Polled<R> {
        Polled { inner, ending }
    }
}

impl<R: Read + AsRawFd> Read for Polled<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut p = libc::pollfd {
                fd: self.inner.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, 100) };
            if r > 0 {
                return self.inner.read(buf);
            }
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if self.ending.gone.load(Ordering::SeqCst) {
                return Ok(0);
            }
        }
    }
}

/// The log file, counting the bytes that reached it.
pub struct Counted {
    f: File,
    n: u64,
}

impl Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.f.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.f.flush()
    }
}

/// What the line thread tells the main thread.
#[derive(Debug)]
pub enum Seen {
    /// The log cannot be written (said already): tracing must stop.
    LogFailed(String),
    Header,
    Attached,
    Barrier {
        n: u64,
        cpu: u32,
    },
    /// A drain's `#D` line (outside a dump).
    Drained,
    /// A dump ended (`#Z <n>`).
    DumpDone(u64),
    /// A dump met a full disk and was taken back whole (`--disk-full wait`): the bytes it
    /// had reached (what it needs at least, to be taken again).
    DumpFailed(u64),
    /// A status span ended (`#h <n>`).
    Status(Box<Status>),
    /// bpftrace's own END began (`#E` outside a dump).
    End,
    /// The log is complete and closed: after the last dump, or at the end of bpftrace's
    /// output. What the line thread kept comes with it.
    Finished(Box<Finished>),
}

/// The flight recorder's state, as a status span printed it.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// bpftrace's clock when it was printed.
    pub now: u64,
    /// The start of the oldest call in flight.
    pub oldest_open: Option<u64>,
    /// Each thread's record count.
    pub seqs: HashMap<u32, u64>,
    /// The progress summary (crate::compose::progress; empty where the script keeps none):
    /// when each process last enqueued a group operation,
    pub enqueued: HashMap<u32, u64>,
    /// and that operation's record id,
    pub enqueued_call: HashMap<u32, u32>,
    /// the time up to which each process's work is proven done,
    pub proven: HashMap<u32, u64>,
    /// and when a group operation was last proven done (0: not since tracing began).
    pub progress: Option<u64>,
}

/// Where a line falls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Span {
    None,
    /// Between a dump's `#E` and its `#Z`.
    Dump,
    /// Between `#H` and `#h`: not for the log.
    Status,
}

/// What the line thread kept, when the log is closed.
#[derive(Debug)]
pub struct Finished {
    pub lines: u64,
    /// Threads that wrote a record (their `T` lines): 0 is a log without records.
    pub threads: u64,
    pub keeper: MapsKeeper,
    /// Records per thread, as stored lines in the log.
    pub stored: HashMap<u32, u64>,
    /// Each thread's record count, from the last dump's `@q`.
    pub seqs: HashMap<u32, u64>,
    /// Held processes (`#X`) that were not released (their copy failed, or SIGCONT did).
    pub unreleased: Vec<u32>,
    /// Why the log ended before the last dump (its `#Q` mark), or could not be written.
    pub early: Option<String>,
}

pub struct Router {
    log: Option<BufWriter<Counted>>,
    path: PathBuf,
    ending: Arc<Ending>,
    /// The last dump's `#Z` came: the log ended as it should.
    completed: bool,
    /// The log could not be written: why.
    failed: Option<String>,
    chan: Option<Channel>,
    keeper: Option<MapsKeeper>,
    tx: Sender<Seen>,
    span: Span,
    status: Status,
    lines: u64,
    threads: u64,
    /// Flight recorder: each thread's newest record written by an earlier dump, and by this one.
    ring_written: HashMap<u32, u64>,
    ring_dump: HashMap<u32, u64>,
    /// Drains: the in-flight entries the last drain listed, and those this one lists.
    entries_before: HashSet<Vec<u8>>,
    entries_now: HashSet<Vec<u8>>,
    stored: HashMap<u32, u64>,
    seqs: HashMap<u32, u64>,
    unreleased: Vec<u32>,
    /// The processes whose threads wrote records (their `T` lines), shared with the main
    /// thread: a restarted bpftrace is told to trace them again (crate::record::restart).
    traced: Arc<Mutex<HashSet<u32>>>,
    /// A restarted bpftrace's header is the first's (the same script): not written again, up
    /// to its attach, where the gap (its start and why) is marked.
    resumed: Option<(u64, String)>,
    /// `--disk-full wait` (crate::record::full): a dump that meets a full disk is taken back.
    pub wait_for_room: bool,
    /// The log's length when the current dump began.
    dump_from: u64,
    /// The current dump was taken back: its other lines are dropped.
    skipping: bool,
    /// Lines between dumps that met a full disk, for the next dump (and their bytes, and those
    /// dropped past the bound).
    held: Vec<Vec<u8>>,
    held_bytes: usize,
    held_dropped: u64,
}

/// `[<tid>, <n>]: ...` or `[<tid>]: ...` after a map's name: the key's numbers and the rest.
fn key_of(line: &[u8]) -> Option<(u64, Option<u64>, &[u8])> {
    let open = line.iter().position(|&b| b == b'[')?;
    let close = open + line[open..].iter().position(|&b| b == b']')?;
    let key = std::str::from_utf8(&line[open + 1..close]).ok()?;
    let rest = line.get(close + 1..)?.strip_prefix(b": ")?;
    let mut it = key.split(", ");
    let a = it.next()?.trim().parse().ok()?;
    let b = match it.next() {
        Some(b) => Some(b.trim().parse().ok()?),
        None => None,
    };
    Some((a, b, rest))
}

/// The first number of a map value: `(<n>, ...` or `<n>`.
fn first_value(rest: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(rest).ok()?;
    let s = s.trim().trim_start_matches('(');
    s.split([',', ')']).next()?.trim().parse().ok()
}

/// The hex number after a control line's letter: `#Z 1f` -> 0x1f.
fn control_arg(line: &[u8], word: usize) -> Option<u64> {
    let s = std::str::from_utf8(line).ok()?;
    u64::from_str_radix(s.split_ascii_whitespace().nth(word)?, 16).ok()
}

impl Router {
    /// Writes the start's clock anchor first (crate::log::anchor); the end's comes when the
    /// log is closed.
    pub fn new(
        log: File,
        path: PathBuf,
        chan: Option<Channel>,
        keeper: MapsKeeper,
        tx: Sender<Seen>,
        ending: Arc<Ending>,
    ) -> Router {
        let mut log = BufWriter::with_capacity(1 << 20, Counted { f: log, n: 0 });
        let _ = writeln!(log, "{}", Anchor::now(false));
        Router {
            log: Some(log),
            path,
            ending,
            completed: false,
            failed: None,
            chan,
            keeper: Some(keeper),
            tx,
            span: Span::None,
            status: Status::default(),
            lines: 0,
            threads: 0,
            ring_written: HashMap::new(),
            ring_dump: HashMap::new(),
            entries_before: HashSet::new(),
            entries_now: HashSet::new(),
            stored: HashMap::new(),
            seqs: HashMap::new(),
            unreleased: Vec::new(),
            traced: Arc::default(),
            resumed: None,
            wait_for_room: false,
            dump_from: 0,
            skipping: false,
            held: Vec::new(),
            held_bytes: 0,
            held_dropped: 0,
        }
    }

    /// The processes that wrote records so far (shared: it grows as the log is written).
    pub fn traced(&self) -> Arc<Mutex<HashSet<u32>>> {
        self.traced.clone()
    }

    /// Reads bpftrace's output to its end (after the log is closed, bpftrace may still be
    /// detaching its probes, and what it prints then is read and dropped).
    /// With `--restart`, `next` gives the output of each bpftrace that record starts again.
    pub fn run<R: Read>(
        mut self,
        out: R,
        next: Option<Receiver<Resume<R>>>,
    ) -> std::io::Result<()> {
        let mut r = BufReader::with_capacity(1 << 20, out);
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                match self.resume(next.as_ref()) {
                    Some(out) => {
                        r = BufReader::with_capacity(1 << 20, out);
                        continue;
                    }
                    None => break,
                }
            }
            let keep = self.route(&line);
            if let Some(mark) = self.gap_mark(&line) {
                self.put(mark.as_bytes(), false);
            }
            if keep {
                // Flushed whenever bpftrace has nothing more in the pipe: under load the log
                // is written in large blocks, and otherwise as it comes, so that a killed
                // bthost loses nothing that bpftrace printed before a pause.
                self.put(&line, r.buffer().is_empty());
            }
            if self.span == Span::None && line.starts_with(b"#Z ") {
                if let Some(n) = control_arg(&line, 1) {
                    let _ = self.tx.send(Seen::DumpDone(n));
                    if n == FINAL_DUMP {
                        self.completed = true;
                        self.close()?;
                    }
                }
            }
        }
        self.close()
    }

    /// Writes a line to the log (if it can still be written).
    fn put(&mut self, line: &[u8], flush: bool) {
        if self.skipping || self.log.is_none() {
            return;
        }
        let waiting = self.wait_for_room;
        // A dump's end line belongs to it (its span ended as it was read).
        let in_dump = self.span == Span::Dump || line.starts_with(b"#Z ");
        if waiting && !in_dump && !self.held.is_empty() {
            // The disk was full: lines between dumps wait for the next dump that has room.
            self.hold(line);
            return;
        }
        self.lines += 1;
        let log = self.log.as_mut().expect("checked");
        let mut written = Ok(());
        if line.starts_with(b"#E") && in_dump {
            // Where the dump begins, should it have to be taken back; the lines held for
            // want of room go first, as they came before it.
            written = log.flush();
            self.dump_from = log.get_ref().n;
            for l in &self.held {
                written = written.and_then(|()| log.write_all(l));
            }
        }
        // Between dumps, with `--disk-full wait`, each line is flushed on its own (they are
        // few: a thread's first record, an exit), so that a full disk cuts no line in two.
        let alone = waiting && !in_dump;
        let before = if alone {
            written = written.and_then(|()| log.flush());
            log.get_ref().n
        } else {
            0
        };
        written = written.and_then(|()| log.write_all(line));
        if written.is_ok() && (flush || alone) {
            written = log.flush();
        }
        match written {
            Ok(()) if line.starts_with(b"#Z ") => {
                // The dump reached the log whole: its records are written, and the lines held.
                for (tid, seq) in self.ring_dump.drain() {
                    let w = self.ring_written.entry(tid).or_default();
                    *w = (*w).max(seq);
                }
                self.held.clear();
                self.held_bytes = 0;
            }
            Ok(()) => {}
            Err(e) if waiting && super::full::is_full(&e) && in_dump => {
                self.take_back(&e, line.starts_with(b"#Z "))
            }
            Err(e) if waiting && super::full::is_full(&e) => {
                self.cut_to(before, &e);
                self.hold(line);
                let _ = self.tx.send(Seen::DumpFailed(line.len() as u64));
            }
            // Said at once; the lines that follow are read and dropped, so that bpftrace
            // does not block on a full pipe until record stops it.
            Err(e) => self.fail(&e),
        }
    }

    /// Keeps a line between dumps for the next dump that has room (bounded: past it, lines
    /// are dropped and counted).
    fn hold(&mut self, line: &[u8]) {
        const MAX_HELD: usize = 16 << 20;
        if self.held_bytes + line.len() <= MAX_HELD {
            self.held_bytes += line.len();
            self.held.push(line.to_vec());
        } else {
            self.held_dropped += 1;
        }
    }

    /// A line between dumps met a full disk: the log is cut back to the line's start.
    fn cut_to(&mut self, len: u64, e: &std::io::Error) {
        if let Some(reached) = self.cut_back(len, e, "its last line") {
            eprintln!(
                "bthost: warning: cannot write {}: {e} after {reached} bytes: the lines \
                 that come are held for the next dump that has room",
                self.path.display()
            );
        }
    }

    /// After `e` (a full disk), cuts the log back to its first `len` bytes, dropping what it
    /// buffered, to be written on from there; the bytes it had reached. If it cannot be cut
    /// back (`to_what`, for the message), the log is closed as failed, said at once.
    fn cut_back(&mut self, len: u64, e: &std::io::Error, to_what: &str) -> Option<u64> {
        let log = self.log.take()?;
        let reached = log.get_ref().n;
        match super::full::rewind(log, len, |c| &mut c.f) {
            Ok(mut c) => {
                c.n = len;
                self.log = Some(BufWriter::with_capacity(1 << 20, c));
                Some(reached)
            }
            Err(e2) => {
                let msg = format!(
                    "cannot write {}: {e}, and cannot cut it back to {to_what}: {e2}",
                    self.path.display()
                );
                eprintln!("bthost: error: {msg}");
                let _ = self.tx.send(Seen::LogFailed(msg.clone()));
                self.failed = Some(msg);
                let _ = self.close();
                None
            }
        }
    }

    /// The dump being written met a full disk: cut the log back to its start, drop the rest
    /// of it, and go on (crate::record::full).
    fn take_back(&mut self, e: &std::io::Error, at_its_end: bool) {
        let Some(reached) = self.cut_back(self.dump_from, e, "its last dump") else {
            return;
        };
        // Its other lines are dropped up to its end (unless that was the line).
        self.skipping = !at_its_end;
        self.ring_dump.clear();
        eprintln!(
            "bthost: warning: cannot write {}: {e} after {reached} bytes: this dump is taken \
             back whole (the log keeps the {} bytes before it)",
            self.path.display(),
            self.dump_from
        );
        let need = reached.saturating_sub(self.dump_from);
        let _ = self.tx.send(Seen::DumpFailed(need));
    }

    /// At the end of a bpftrace's output: the next one's, if record restarts it. Its state
    /// of the old one's maps (numbers, dumps, drains) starts again; the gap's start and
    /// cause wait for its attach. None: the log is to be closed (with the reason record gave
    /// up in its `#Q` mark).
    fn resume<R>(&mut self, next: Option<&Receiver<Resume<R>>>) -> Option<R> {
        let next = next?;
        if self.completed
            || self.log.is_none()
            || !self.ending.restarting.load(Ordering::SeqCst)
            || self.ending.stopping.load(Ordering::SeqCst)
        {
            return None;
        }
        let gap = self.ending.why.lock().ok().and_then(|w| w.clone());
        match next.recv() {
            Ok(Resume::Run { out, ending }) => {
                self.ending = ending;
                self.resumed = Some(gap.unwrap_or_else(|| (monotonic_ns(), String::new())));
                self.span = Span::None;
                self.ring_written.clear();
                self.ring_dump.clear();
                self.entries_before.clear();
                self.entries_now.clear();
                self.stored.clear();
                self.seqs.clear();
                Some(out)
            }
            Ok(Resume::GiveUp(why)) => {
                // Tracing stopped when the first of them ended.
                let first = self.resumed.as_ref().map(|r| r.0);
                if let Ok(mut w) = self.ending.why.lock() {
                    let at = first.or(w.as_ref().map(|w| w.0));
                    *w = Some((at.unwrap_or_else(monotonic_ns), why));
                }
                None
            }
            Err(_) => None,
        }
    }

    /// After a restart: the gap's mark, when the new bpftrace's attach line comes.
    fn gap_mark(&mut self, line: &[u8]) -> Option<String> {
        self.resumed.as_ref()?;
        let l = line.strip_suffix(b"\n").unwrap_or(line);
        if l != ATTACHED_LINE.as_bytes() {
            return None;
        }
        let (from, why) = self.resumed.take()?;
        let why: String = why
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Some(format!("{GAP_MARK} {from:x} {:x} {why}\n", monotonic_ns()))
    }

    /// The log cannot be written: says so with the OS's reason and what reached the file,
    /// keeps that, and tells the main thread.
    fn fail(&mut self, e: &std::io::Error) {
        let Some(log) = self.log.take() else {
            return;
        };
        // Not flushed again: what is on the disk stays as it is.
        let (file, _) = log.into_parts();
        let msg = format!(
            "cannot write {}: {e} after {} bytes",
            self.path.display(),
            file.n
        );
        eprintln!("bthost: error: {msg}");
        let _ = self.tx.send(Seen::LogFailed(msg.clone()));
        self.failed = Some(msg);
        let _ = self.close();
    }

    /// Why the log ends early, if it does: tracing stopped without the last dump.
    fn early(&self) -> Option<(u64, String)> {
        if self.completed || self.ending.stopping.load(Ordering::SeqCst) {
            return None;
        }
        // The main thread says why within a poll of bpftrace (100 ms) of its end.
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(w) = self.ending.why.lock().ok().and_then(|w| w.clone()) {
                return Some(w);
            }
            if Instant::now() >= until || self.ending.stopping.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.ending.stopping.load(Ordering::SeqCst) {
            return None;
        }
        Some((monotonic_ns(), "bpftrace's output ended".into()))
    }

    /// Closes the log (once) and hands what was kept to the main thread. A log that ends
    /// early says so, when and why (`#Q`), before its end anchor.
    fn close(&mut self) -> std::io::Result<()> {
        let mut flushed = Ok(());
        let mut early = self.failed.clone();
        let lost = self.held.len() as u64 + self.held_dropped;
        if lost > 0 && self.log.is_some() {
            eprintln!(
                "bthost: warning: {lost} lines held for want of room on the log's disk never \
                 reached it (no dump after them found room)"
            );
            self.held.clear();
            self.held_dropped = 0;
        }
        if let Some(mut log) = self.log.take() {
            let mark = self.early();
            if let Some((time, why)) = &mark {
                let why: String = why
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                flushed = writeln!(log, "{EARLY_MARK} {time:x} {why}");
                early = Some(why);
            }
            flushed = flushed
                .and_then(|()| writeln!(log, "{}", Anchor::now(true)))
                .and_then(|()| log.flush());
            if let Err(e) = &flushed {
                let msg = format!(
                    "cannot write {}: {e} after {} bytes",
                    self.path.display(),
                    log.get_ref().n
                );
                eprintln!("bthost: error: {msg}");
                let _ = self.tx.send(Seen::LogFailed(msg.clone()));
                early = Some(msg);
            }
            // Not flushed again when dropped.
            let _ = log.into_parts();
        }
        if let Some(keeper) = self.keeper.take() {
            let _ = self.tx.send(Seen::Finished(Box::new(Finished {
                lines: self.lines,
                threads: self.threads,
                keeper,
                stored: std::mem::take(&mut self.stored),
                seqs: std::mem::take(&mut self.seqs),
                unreleased: std::mem::take(&mut self.unreleased),
                early,
            })));
        }
        flushed
    }

    /// Acts on one line; whether it goes to the log.
    fn route(&mut self, line: &[u8]) -> bool {
        let l = line.strip_suffix(b"\n").unwrap_or(line);
        if l.first() == Some(&b'@') {
            return self.map_line(l);
        }
        if l.starts_with(b"T ") {
            self.threads += 1;
            // A thread's first record: its process's map is copied (once per new thread).
            if let Some(pid) = control_arg(l, 1) {
                if let Ok(mut t) = self.traced.lock() {
                    t.insert(pid as u32);
                }
                self.take_maps(pid as u32);
            }
            return true;
        }
        if l.first() != Some(&b'#') {
            return true;
        }
        match l.get(1) {
            Some(b'b') if l.starts_with(b"#bthost ") => {
                let _ = self.tx.send(Seen::Header);
                self.resumed.is_none()
            }
            // The schema, printed again by a restarted bpftrace.
            Some(b'S') if self.resumed.is_some() && l.starts_with(b"#S ") => false,
            Some(b'A') if l == ATTACHED_LINE.as_bytes() => {
                let _ = self.tx.send(Seen::Attached);
                false
            }
            Some(b'B') => {
                if let (Some(n), Some(cpu)) = (control_arg(l, 1), control_arg(l, 2)) {
                    let _ = self.tx.send(Seen::Barrier { n, cpu: cpu as u32 });
                }
                false
            }
            Some(b'D') => {
                if self.span == Span::None {
                    self.entries_before = std::mem::take(&mut self.entries_now);
                    let _ = self.tx.send(Seen::Drained);
                }
                true
            }
            Some(b'E') => {
                if self.chan.is_some() && self.log.is_some() {
                    self.span = Span::Dump;
                    self.ring_dump.clear();
                } else {
                    let _ = self.tx.send(Seen::End);
                }
                true
            }
            Some(b'Z') => {
                self.span = Span::None;
                if std::mem::take(&mut self.skipping) {
                    // Its records never reached the log: the next dump writes them.
                    self.ring_dump.clear();
                    return false;
                }
                // Its records count as written once this line is (Router::put).
                true
            }
            Some(b'H') => {
                self.span = Span::Status;
                self.status = Status {
                    now: control_arg(l, 2).unwrap_or(0),
                    ..Default::default()
                };
                false
            }
            Some(b'h') => {
                self.span = Span::None;
                let _ = self
                    .tx
                    .send(Seen::Status(Box::new(std::mem::take(&mut self.status))));
                false
            }
            Some(b'X') => {
                // A process held at its exit: copy its map, then let it go.
                if let (Some(pid), Some(k)) = (control_arg(l, 1), self.keeper.as_mut()) {
                    let pid = pid as u32;
                    k.snapshot(pid);
                    k.held += 1;
                    // SAFETY: kill(2) with a pid the script stopped.
                    if unsafe { libc::kill(pid as i32, libc::SIGCONT) } != 0 {
                        self.unreleased.push(pid);
                    }
                }
                false
            }
            Some(b'M') => {
                if let Some(pid) = control_arg(l, 1) {
                    self.take_maps(pid as u32);
                }
                false
            }
            _ => true,
        }
    }

    /// Copies `pid`'s map, and tells the script, so that the process is not held at its exit
    /// (unless it loads a library after this). Copied once more after telling: a library
    /// loaded between the first copy and the telling is in the second.
    fn take_maps(&mut self, pid: u32) {
        let Some(k) = self.keeper.as_mut() else {
            return;
        };
        // Gone already (or exiting): the script holds it at its exit if it can, else missed.
        if !k.snapshot(pid) {
            return;
        }
        if let Some(c) = self.chan {
            c.maps_taken(pid);
            k.snapshot(pid);
        }
    }

    /// A map entry bpftrace printed.
    fn map_line(&mut self, l: &[u8]) -> bool {
        let name_end = l
            .iter()
            .position(|&b| b == b'[' || b == b':')
            .unwrap_or(l.len());
        let name = &l[1..name_end];
        // The progress summary's maps (crate::compose::progress), printed in status spans only.
        if self.span == Span::Status && name.first() == Some(&b'g') {
            self.progress_line(name, l);
            return false;
        }
        let Some((a, b, rest)) = key_of(l) else {
            return true;
        };
        match name.first() {
            // `@r<phase>w<width>[tid, seq]`: a drained record.
            Some(b'r') => {
                *self.stored.entry(a as u32).or_default() += 1;
                true
            }
            // `@f[tid, slot]: (seq, ...)`: the ring; each record written once over dumps.
            Some(b'f') => {
                let Some(seq) = first_value(rest) else {
                    return true;
                };
                let tid = a as u32;
                if self.ring_written.get(&tid).is_some_and(|&w| seq <= w) {
                    return false;
                }
                let d = self.ring_dump.entry(tid).or_default();
                *d = (*d).max(seq);
                *self.stored.entry(tid).or_default() += 1;
                true
            }
            // `@q[tid]: n`: a thread's record count.
            Some(b'q') if b.is_none() => {
                let n = first_value(rest).unwrap_or(0);
                if self.span == Span::Status {
                    self.status.seqs.insert(a as u32, n);
                    return false;
                }
                self.seqs.insert(a as u32, n);
                true
            }
            // `@p<n>[tid, id]: (start, ...)`: a call in flight; start 0: closed (the scripts for
            // bpftrace before 0.19 overwrite an entry at its exit rather than delete it).
            Some(b'p') if b.is_some() && first_value(rest) == Some(0) => false,
            Some(b'p') if b.is_some() => {
                if self.span == Span::Status {
                    if let Some(t) = first_value(rest) {
                        let o = self.status.oldest_open.get_or_insert(t);
                        *o = (*o).min(t);
                    }
                    return false;
                }
                if self.span == Span::Dump {
                    return true;
                }
                // Listed by each drain while it lasts: written the first time.
                let fresh = !self.entries_before.contains(l);
                self.entries_now.insert(l.to_vec());
                fresh
            }
            _ => true,
        }
    }

    /// `@gq[pid]: time`, `@gf[pid]: id`, `@gd[pid]: time`, `@gprog: time` (bpftrace 0.17 to
    /// 0.27 print them alike; a line that does not parse is ignored).
    fn progress_line(&mut self, name: &[u8], l: &[u8]) {
        if name == b"gprog" {
            let rest = l.get(name.len() + 1..).and_then(|r| r.strip_prefix(b": "));
            if let Some(t) = rest.and_then(first_value) {
                self.status.progress = Some(t);
            }
            return;
        }
        let Some((pid, None, rest)) = key_of(l) else {
            return;
        };
        let (Some(v), pid) = (first_value(rest), pid as u32) else {
            return;
        };
        match name {
            b"gq" => {
                self.status.enqueued.insert(pid, v);
            }
            b"gf" => {
                self.status.enqueued_call.insert(pid, v as u32);
            }
            b"gd" => {
                self.status.proven.insert(pid, v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keys_and_values() {
        assert_eq!(
            key_of(b"@r0w4[17149, 12]: (6, 1179002245368)"),
            Some((17149, Some(12), &b"(6, 1179002245368)"[..]))
        );
        assert_eq!(key_of(b"@q[7]: 12"), Some((7, None, &b"12"[..])));
        assert_eq!(key_of(b"@q: 12"), None);
        assert_eq!(first_value(b"(5, 1795, 1)"), Some(5));
        assert_eq!(first_value(b"12"), Some(12));
        assert_eq!(control_arg(b"#B 3 1", 2), Some(1));
        assert_eq!(control_arg(b"#Z ffffffff", 1), Some(FINAL_DUMP));
    }

    fn router(name: &str) -> (Router, std::sync::mpsc::Receiver<Seen>, std::path::PathBuf) {
        // Tests run in parallel in one process: each router its own folder.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("bthost-lines-{}-{name}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (out, log) = crate::safe_out::OutDir::for_file(&dir.join("run.log")).unwrap();
        let log = log.to_str().unwrap().to_string();
        let file = out.create_file(&log).unwrap();
        let keeper = MapsKeeper::new(&out, &log).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.join("run.log");
        let ending = Arc::new(Ending::default());
        (Router::new(file, path, None, keeper, tx, ending), rx, dir)
    }

    fn status_of(lines: &[&str]) -> Status {
        let (mut r, rx, dir) = router("status");
        for l in lines {
            assert!(!r.route(format!("{l}\n").as_bytes()), "{l} went to the log");
        }
        drop(r);
        let _ = std::fs::remove_dir_all(dir);
        match rx.try_recv() {
            Ok(Seen::Status(s)) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_status_span_with_the_progress_summary() {
        let s = status_of(&[
            "#H 1 64",
            "@p2[5, 3]: (90, 1, 2)",
            "@q[5]: 12",
            "@gq[0]: 0",
            "@gq[1234]: 99",
            "@gf[0]: 0",
            "@gf[1234]: 97",
            "@gd[0]: 0",
            "@gd[1234]: 77",
            "@gprog: 55",
            "#h 1",
        ]);
        assert_eq!((s.now, s.oldest_open), (0x64, Some(90)));
        assert_eq!(s.seqs, HashMap::from([(5, 12)]));
        assert_eq!(s.enqueued, HashMap::from([(0, 0), (1234, 99)]));
        assert_eq!(s.enqueued_call, HashMap::from([(0, 0), (1234, 97)]));
        assert_eq!(s.proven, HashMap::from([(0, 0), (1234, 77)]));
        assert_eq!(s.progress, Some(55));
    }

    #[test]
    fn a_status_span_without_it() {
        let s = status_of(&["#H 2 64", "@q[5]: 12", "#h 2"]);
        assert!(s.enqueued.is_empty() && s.proven.is_empty());
        assert_eq!(s.progress, None);
    }
}
