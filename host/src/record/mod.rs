//! `bthost record`: build the script for the installed bpftrace, run it (system-wide: the ranks
//! of a job are many processes; or only the processes of `--pid` and their descendants), write
//! its output to the log as it comes, and keep a copy of each traced process's memory map
//! beside the log (`LOG.maps/PID.maps`) so that `convert` can symbolize code addresses after
//! the processes are gone.
//!
//! With a command, the command starts once every probe is attached; tracing stops when it
//! exits, at Ctrl-C (or SIGTERM), or after `--duration`. Stopping is ordered so that nothing
//! written before the stop is lost and the log is complete at once:
//! 1. a drain barrier: record fires a probe of its own on every CPU and waits for each line,
//!    so that everything printed before is read (bpftrace 0.17 has a buffer per CPU, and
//!    stopping it before it has read them all lost the tail of short runs);
//! 2. a last dump: the records still in the kernel's maps and the calls in flight, ended by a
//!    line of its own, after which the log is closed;
//! 3. only then bpftrace is told to stop; it detaches its probes (seconds: the kernel
//!    unregisters each uprobe) on its own, without holding the user or the log.

pub mod announce;
pub mod cost;
pub mod dump;
mod full;
mod hang;
mod lines;
mod loads;
mod maps;
mod pids;
mod restart;
mod runner;
pub mod sentinel;
mod signals;
mod stacks;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use maps::{maps_dir, recorded_maps};

use crate::bpftrace::Dialect;
use crate::commands::build::{self, BuildOptions};
use crate::compose::emit::Emit;
use crate::compose::hooks::Hooks;
use crate::library::job::Job;
use crate::registry::Registry;
use crate::safe_out::OutDir;
use lines::{Ending, Finished, Router, Seen, FINAL_DUMP};
use sentinel::Channel;

pub struct RecordOptions {
    /// Packs, bpftrace and libraries; record chooses the script's other options.
    pub build: BuildOptions,
    pub bpftrace_bin: PathBuf,
    pub log: PathBuf,
    /// The workload to run while tracing; empty: trace until Ctrl-C (or `duration`).
    pub command: Vec<String>,
    /// How records leave the kernel.
    pub emit: Emit,
    /// Trace only these processes and those they start (empty: every process, unless
    /// `announced`).
    pub pids: Vec<u32>,
    /// Trace (also) the processes announced with this token (crate::record::announce).
    pub announced: Option<u64>,
    pub duration: Option<Duration>,
    /// Flight recorder: dump when no group operation has completed this long while one is
    /// pending, or calls have been in flight this long with none completing (record::hang).
    pub on_hang: Option<Duration>,
    /// bpftrace's map size (None: a default for the strategy).
    pub map_keys: Option<u32>,
    pub perf_rb_pages: Option<u32>,
    /// Run bpftrace again when it ends early (crate::record::restart).
    pub restart: bool,
    /// A flight-recorder dump that meets a full disk is taken back, and taken again when
    /// there is room; tracing goes on (crate::record::full).
    pub wait_for_room: bool,
    /// Take the traced processes' stacks at each dump (crate::record::stacks).
    pub stacks: bool,
}

/// The map size record gives bpftrace unless told: bpftrace gives every map this many
/// entries and preallocates them all (~100-200 bytes each), so it is a memory bound per map.
/// Drained: 8192 records per map between two drains (50 ms) is 160,000 records/s per record
/// width, past what this machine's probes reach (~90,000 calls/s on 2 cores).
pub fn default_map_keys(emit: &Emit) -> u32 {
    match emit {
        Emit::Printf => 4096,
        Emit::Drained { .. } => 8192,
        // The ring holds N records for each thread: room for 64 threads.
        Emit::Ring { per_thread } => (per_thread.saturating_mul(64)).max(4096),
    }
}

pub struct Recorded {
    pub script: PathBuf,
    pub lines: u64,
    pub maps_dir: PathBuf,
    pub processes: usize,
    /// Processes held at their exit for their memory map (they would have gone unseen).
    pub held: u32,
    /// The workload's exit status, when there was one and it ended.
    pub command_status: Option<ExitStatus>,
    /// Records lost in the kernel (a map full), found from each thread's record count.
    pub lost: u64,
    /// Flight-recorder dumps written before the last one.
    pub dumps: u32,
    /// What stopped tracing.
    pub stopped_by: String,
    /// From the stop to the complete, closed log.
    pub stop_to_closed: Duration,
    /// bpftrace is still detaching its probes (not waited for).
    pub detaching: bool,
    /// What the recording cost (sampled at the stop).
    pub cost: cost::Cost,
    /// Tracing stopped early (bpftrace ended, or the log could not be written): why, as said
    /// at once on stderr. record then exits non-zero.
    pub failure: Option<String>,
    /// bpftrace ended early and was run again (`--restart`): each time, in words.
    pub restarts: Vec<String>,
}

/// A running bpftrace and what record knows of it.
struct Tracer {
    bt: Child,
    rx: Receiver<Seen>,
    chan: Option<Channel>,
    dumps: u32,
    draining: Option<Instant>,
    last_drain: Instant,
    /// Shared with the line thread: bpftrace's end.
    ending: Arc<Ending>,
    /// bpftrace's last stderr lines.
    last_words: runner::LastWords,
    /// bpftrace ended before record stopped it: why (said at once).
    died: Option<String>,
    /// The log could not be written: why (said at once by the line thread).
    log_failed: Option<String>,
    /// The log, closed, if the line thread said so while record waited for something else.
    finished: Option<Box<Finished>>,
    last_check: Option<Instant>,
    started: Instant,
    /// Tracing began (before, a failed bpftrace is said by the failure to attach).
    attached: bool,
    /// `--restart`: how to run bpftrace again.
    respawn: Option<restart::Respawn>,
    /// The processes that wrote records (the line thread adds them).
    traced: Arc<std::sync::Mutex<HashSet<u32>>>,
    /// A dump was taken back for want of room: the bytes it needs at least.
    room_needed: Option<u64>,
    last_room_check: Option<Instant>,
    /// The script's descriptor for a restarted bpftrace (crate::record::runner::spawn).
    script_fd: Option<std::os::fd::OwnedFd>,
    /// Takes the traced processes' stacks at the dumps (None: --no-stacks).
    stacks: Option<stacks::StackKeeper>,
}

impl Tracer {
    /// Waits until `done` says yes of a message (handling the others), and returns it; None
    /// if `limit` passes first, or bpftrace's output ends.
    /// Also None at once when bpftrace ends or the log cannot be written.
    fn wait_for(&mut self, limit: Duration, mut done: impl FnMut(&Seen) -> bool) -> Option<Seen> {
        let until = Instant::now() + limit;
        loop {
            if self.broken() {
                return None;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(s) if done(&s) => return Some(s),
                Ok(s) => self.note(s),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Keeps track of a message no one waits for.
    fn note(&mut self, s: Seen) {
        match s {
            Seen::Drained => self.draining = None,
            Seen::Finished(f) => self.finished = Some(f),
            Seen::DumpFailed(need) => self.room_needed = Some(need),
            Seen::LogFailed(why) => {
                self.log_failed.get_or_insert(why);
            }
            _ => {}
        }
    }

    /// Whether tracing cannot go on: bpftrace ended (checked every 100 ms at most) or the
    /// log cannot be written.
    fn broken(&mut self) -> bool {
        self.log_failed.is_some() || self.check_died()
    }

    /// Whether bpftrace has ended (or is ending) without record stopping it; said at once, with
    /// its cause and its last words, the first time.
    fn check_died(&mut self) -> bool {
        if self.died.is_some() {
            return true;
        }
        if self.ending.stopping.load(Ordering::SeqCst)
            || self
                .last_check
                .is_some_and(|c| c.elapsed() < Duration::from_millis(100))
        {
            return false;
        }
        self.last_check = Some(Instant::now());
        use std::os::unix::process::ExitStatusExt;
        let status = match runner::exiting(self.bt.id()) {
            Some(s) => s,
            None => match self.bt.try_wait() {
                Ok(Some(st)) => st.into_raw(),
                _ => return false,
            },
        };
        let cause = runner::describe_exit(status);
        let words = runner::short_words(&self.last_words);
        self.died = Some(cause.clone());
        if !self.attached {
            self.ending.stopped_early(cause);
            return true;
        }
        // Run again, unless it ended as quickly after its last restart (or the log cannot
        // be written: tracing into it is pointless).
        let refusal = self.respawn.as_ref().map(restart::Respawn::refusal);
        let then = match &refusal {
            Some(None) if self.log_failed.is_none() => {
                self.ending.restart(cause.clone());
                "restarting it".to_string()
            }
            Some(Some(no)) => {
                self.ending.stopped_early(format!("{cause}; {no}"));
                format!("tracing stopped early ({no})")
            }
            _ => {
                self.ending.stopped_early(cause.clone());
                "tracing stopped early".to_string()
            }
        };
        eprintln!(
            "bthost: error: {cause}, {:.1} s into tracing: {then}{}",
            self.started.elapsed().as_secs_f64(),
            if words.is_empty() {
                String::new()
            } else {
                format!(" (bpftrace said: {words})")
            }
        );
        true
    }

    /// Waits for the line thread to close the log.
    fn finished(&mut self, limit: Duration) -> Option<Box<Finished>> {
        if let Some(f) = self.finished.take() {
            return Some(f);
        }
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Seen::Finished(f)) => return Some(f),
                Ok(s) => self.note(s),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if left.is_zero() {
                        return None;
                    }
                    // bpftrace ending while record waits for its last lines: the log is closed
                    // with what came.
                    self.check_died();
                }
            }
        }
    }

    /// record stops bpftrace itself from now on: its end is not early.
    fn stopping(&self) {
        self.ending.stopping.store(true, Ordering::SeqCst);
    }

    fn running(&mut self) -> bool {
        matches!(self.bt.try_wait(), Ok(None))
    }
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

fn pin(cpus: &[usize]) {
    // SAFETY: as in allowed_cpus; sched_setaffinity on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The drain barrier: a line from a probe fired on every CPU this thread may use, each awaited.
/// Whether every line came.
fn barrier(t: &mut Tracer, chan: Channel, n: u64) -> bool {
    let cpus = allowed_cpus();
    for &c in &cpus {
        pin(&[c]);
        chan.barrier(n);
    }
    pin(&cpus);
    let mut seen: HashSet<u32> = HashSet::new();
    let want = cpus.len();
    t.wait_for(Duration::from_secs(10), |s| {
        if let Seen::Barrier { n: m, cpu } = s {
            if *m == n {
                seen.insert(*cpu);
            }
        }
        seen.len() >= want
    })
    .is_some()
}

/// Asks for a dump and waits for its end; whether it came.
fn dump(t: &mut Tracer, chan: Channel, n: u64) -> bool {
    chan.dump(n);
    t.wait_for(
        Duration::from_secs(60),
        |s| matches!(s, Seen::DumpDone(m) if *m == n),
    )
    .is_some()
}

/// The stacks of the traced processes, for the dump just made.
fn take_stacks(t: &mut Tracer, why: &str) {
    let n = u64::from(t.dumps);
    if let Some(s) = t.stacks.as_mut() {
        s.take(n, why);
    }
}

/// At the stop, the stacks when something is in flight (crate::record::stacks): the flight
/// recorder's status says; the other strategies keep none, and a stop that is not the
/// command's exit stands for it.
fn stacks_at_stop(t: &mut Tracer, chan: Channel, opts: &RecordOptions, stopped_by: &str) {
    if t.stacks.is_none() {
        return;
    }
    let busy = if matches!(opts.emit, Emit::Ring { .. }) {
        chan.status(u64::MAX);
        let st = t.wait_for(Duration::from_secs(2), |s| matches!(s, Seen::Status(_)));
        match st {
            Some(Seen::Status(s)) => {
                s.oldest_open.is_some()
                    || s.enqueued
                        .iter()
                        .any(|(pid, q)| *q > s.proven.get(pid).copied().unwrap_or(0))
            }
            _ => false,
        }
    } else {
        !stopped_by.starts_with("the command exited")
    };
    if busy {
        t.dumps += 1;
        take_stacks(t, "stop");
        t.dumps -= 1;
    }
}

/// The libc whose exit record holds a short-lived process at (None: not found, or a path
/// that cannot be written into a script).
fn libc_path() -> Option<String> {
    let cache = crate::library::LdCache::load();
    let p = cache.lookup("libc.so.6")?.to_str()?.to_string();
    crate::ident::check_lib_path(&p).ok()?;
    Some(p)
}

pub fn record(reg: &Registry, opts: &RecordOptions) -> Result<Recorded> {
    pids::check(&opts.pids).map_err(anyhow::Error::msg)?;
    if opts.on_hang.is_some() && !matches!(opts.emit, Emit::Ring { .. }) {
        bail!("--on-hang dumps the flight recorder: give --flight-recorder N too");
    }
    if opts.wait_for_room && !matches!(opts.emit, Emit::Ring { .. }) {
        bail!(
            "--disk-full wait keeps the records in the flight recorder until there is room: give \
             --flight-recorder N too (records written as they come cannot wait)"
        );
    }
    let version = opts.build.bpftrace.resolve()?;
    let dialect = Dialect::for_version(&version);

    // Outputs, checked before anything starts (crate::safe_out).
    let (dir, log_name) = OutDir::for_file(&opts.log)?;
    let log_name = log_name
        .to_str()
        .context("the log's file name is not UTF-8")?
        .to_string();
    let log_file = dir.create_file(&log_name)?;
    let keeper = maps::MapsKeeper::new(&dir, &log_name)?;

    let token = opts
        .announced
        .unwrap_or_else(|| u64::from(std::process::id()));
    let hooks = match sentinel::probeable_exe() {
        Ok(exe) => Some(Hooks {
            exe,
            token,
            filter: !opts.pids.is_empty() || opts.announced.is_some(),
            pids: opts.pids.clone(),
            libc: libc_path(),
        }),
        Err(why) => {
            if !opts.pids.is_empty() || opts.announced.is_some() {
                bail!(
                    "--pid and --announced need bthost's own probes, which cannot be placed: {why}"
                );
            }
            eprintln!(
                "bthost: warning: {why}: record cannot talk to its script; it stops bpftrace \
                 with SIGINT (slower, and bpftrace 0.17 may lose the last records)"
            );
            None
        }
    };
    let chan = hooks.as_ref().map(|_| Channel { token });
    let map_keys = opts
        .map_keys
        .unwrap_or_else(|| default_map_keys(&opts.emit));
    let mut bo = opts.build.clone();
    bo.bpftrace = build::BpftraceChoice::Version(version.clone());
    bo.script = crate::compose::Options {
        exit_after_begin: false,
        emit: opts.emit.clone(),
        hooks: hooks.clone(),
        map_keys: Some(map_keys),
        perf_rb_pages: opts.perf_rb_pages,
    };
    // The job, when it is known, decides which copy of each pack's library is probed
    // (crate::library::job): the command's program, or the processes of --pid.
    let job = match (opts.command.first(), opts.pids.is_empty(), opts.announced) {
        (Some(prog), true, None) => Job::Command(prog.clone()),
        (None, false, None) => Job::Pids(opts.pids.clone()),
        _ => Job::Unknown,
    };
    let built = build::build_for(reg, &bo, &job)?;
    build::warn_left_out(&built);
    let probed = probed_files(reg, &built);
    let bases: Vec<String> = probed.iter().flat_map(|p| p.bases.clone()).collect();
    // Which copies the traced processes load (announced processes are not known to record:
    // only the maps it keeps tell).
    let watch = match (opts.announced, opts.pids.is_empty()) {
        (Some(_), _) => None,
        (None, true) => Some(loads::Watch::start(bases.clone(), loads::Scope::All)),
        (None, false) => Some(loads::Watch::start(
            bases.clone(),
            loads::Scope::Tree(opts.pids.clone()),
        )),
    };
    let script_name = format!("{log_name}.bt");
    build::write_in(&built, &dir, &script_name)?;
    let script = dir.path().join(&script_name);

    runner::raise_memlock();
    signals::install_all();
    // A live dump prints the held records' map, which printf's probes delete from: bpftrace
    // before 0.19 dies of that, so there bpftrace's own END (after it has detached) prints it,
    // and bpftrace must answer SIGINT.
    let live_dump = chan.is_some() && (opts.emit != Emit::Printf || dialect.print_survives_deletes);
    let settings = runner::Settings {
        map_keys: Some(map_keys),
        perf_rb_pages: opts.perf_rb_pages,
        unsafe_actions: hooks.as_ref().is_some_and(|h| h.libc.is_some()),
        shielded: live_dump,
    };
    let spawned = Instant::now();
    let (mut bt, script_fd) =
        runner::spawn(&opts.bpftrace_bin, &built.script, &dialect, &settings)?;
    let last_words = runner::LastWords::default();
    let stderr = runner::pass_stderr(&mut bt, last_words.clone());
    let out = bt.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let ending = Arc::new(Ending::default());
    let mut router = Router::new(
        log_file,
        dir.path().join(&log_name),
        chan,
        keeper,
        tx,
        ending.clone(),
    );
    router.wait_for_room = opts.wait_for_room;
    let router_traced = router.traced();
    let out = lines::Polled::new(out, ending.clone());
    let (next_tx, next_rx) = mpsc::channel();
    let filtering = !opts.pids.is_empty() || opts.announced.is_some();
    let respawn = opts.restart.then(|| restart::Respawn {
        bin: opts.bpftrace_bin.clone(),
        script: built.script.clone(),
        dialect: dialect.clone(),
        settings,
        next: next_tx,
        roots: filtering.then(|| opts.pids.clone()),
        restarts: 0,
        restarted_at: None,
        said: Vec::new(),
    });
    let next = opts.restart.then_some(next_rx);
    // Not joined: after the log is closed it reads what bpftrace still prints while it detaches.
    std::thread::spawn(move || router.run(out, next));
    let mut t = Tracer {
        bt,
        rx,
        chan,
        dumps: 0,
        draining: None,
        last_drain: Instant::now(),
        ending,
        last_words,
        died: None,
        log_failed: None,
        finished: None,
        last_check: None,
        started: Instant::now(),
        attached: false,
        respawn,
        traced: router_traced,
        room_needed: None,
        last_room_check: None,
        script_fd: Some(script_fd),
        stacks: opts
            .stacks
            .then(|| stacks::StackKeeper::new(&dir, &log_name)),
    };

    // Wait for the probes to be attached (or for bpftrace to fail): call the sentinel until
    // its probe, the script's last, fires. bpftrace runs BEGIN before it attaches the others.
    let attached = match chan {
        Some(c) => loop {
            c.attached();
            if t.wait_for(Duration::from_millis(50), |s| matches!(s, Seen::Attached))
                .is_some()
            {
                break true;
            }
            if t.died.is_some() || !t.running() || signals::stop_requested().is_some() {
                break false;
            }
        },
        None => {
            let header = t
                .wait_for(Duration::from_secs(600), |s| matches!(s, Seen::Header))
                .is_some();
            // As long as attaching takes bpftrace 0.17 per probe (~40 ms here), generously.
            if header {
                std::thread::sleep(Duration::from_millis(100 * built.probe_count as u64));
            }
            header
        }
    };
    if !attached {
        t.stopping();
        let _ = t.bt.kill();
        let status = t.bt.wait().context("waiting for bpftrace")?;
        let said = stderr.join().unwrap_or_default();
        bail!(
            "bpftrace ({}) exited with {status} before attaching its probes{}",
            opts.bpftrace_bin.display(),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {}", said.join(" / "))
            }
        );
    }

    eprintln!(
        "bthost: tracing: {} probes attached, records {}; {}",
        built.probe_count,
        match opts.emit {
            Emit::Printf => "printed".to_string(),
            Emit::Drained { period_ms } => format!("drained every {period_ms} ms"),
            Emit::Ring { per_thread } =>
                format!("kept in a flight recorder of {per_thread} per thread"),
        },
        if opts.command.is_empty() {
            "Ctrl-C (or SIGTERM) stops"
        } else {
            "starting the command"
        }
    );
    let started = Instant::now();
    t.started = started;
    t.attached = true;
    let cost_start = cost::Start::now(t.bt.id(), spawned.elapsed());
    let mut child = match opts.command.first() {
        None => None,
        Some(prog) => {
            let mut cmd = Command::new(prog);
            cmd.args(&opts.command[1..]);
            // With a filter, the command is traced too: it says so itself, before its exec.
            // Its map is copied before it exits, records or not: which copy of each pack's
            // library it loaded is said at the stop (crate::record::loads).
            let filtering = !opts.pids.is_empty() || opts.announced.is_some();
            if let Some(c) = chan {
                // SAFETY: the sentinel calls and getpid are async-signal-safe.
                unsafe {
                    cmd.pre_exec(move || {
                        let pid = libc::getpid() as u32;
                        if filtering {
                            c.trace_pid(pid);
                        }
                        c.maps_wanted(pid);
                        Ok(())
                    });
                }
            }
            let child = cmd.spawn().with_context(|| format!("cannot run {prog}"))?;
            if let Some(w) = &watch {
                w.add_root(child.id());
            }
            if let Some(roots) = t.respawn.as_mut().and_then(|r| r.roots.as_mut()) {
                roots.push(child.id());
            }
            Some(child)
        }
    };

    // The record ids the hang watch names calls by.
    let names: HashMap<u32, String> = built
        .schema
        .records
        .iter()
        .map(|r| (r.id, r.function.clone()))
        .collect();
    let (command_status, stopped_by) = run_until_stop(&mut t, opts, &names, &mut child, started)?;

    // Stop in order: nothing written before now is lost, and the log is complete at once.
    let t_stop = Instant::now();
    // The bpftrace tracing began with, while it runs (a restarted one's CPU is not that of
    // the start: neither is said).
    let same = !matches!(&t.respawn, Some(r) if r.restarts > 0);
    let alive = t.died.is_none() && runner::exiting(t.bt.id()).is_none();
    let cost = cost::Cost::sample(
        (same && alive).then(|| t.bt.id()),
        cost_start,
        started.elapsed(),
    );
    let fin = match chan {
        // bpftrace ended, or the log cannot be written: no barrier, no last dump; the line
        // thread closes the log with what came (and its `#Q` mark). A log that cannot be
        // written stops bpftrace at once: it would block on a full pipe.
        _ if t.broken() => {
            if t.log_failed.is_some() {
                t.stopping();
                let _ = t.bt.kill();
            }
            t.finished(Duration::from_secs(10))
        }
        Some(c) => {
            stacks_at_stop(&mut t, c, opts, &stopped_by);
            // Processes exiting from now on are not held: record is about to stop releasing.
            c.maps_taken(0);
            if !barrier(&mut t, c, 1) && t.running() {
                eprintln!("bthost: warning: the drain barrier did not complete within 10 s");
            }
            if live_dump {
                c.dump(FINAL_DUMP);
            } else {
                t.stopping();
                // SAFETY: kill(2) of our own child.
                unsafe { libc::kill(t.bt.id() as i32, libc::SIGINT) };
            }
            let fin = t.finished(Duration::from_secs(600));
            t.stopping();
            // The log is complete: bpftrace ignores SIGINT (shielded), so it is killed; the
            // kernel detaches its probes as it exits.
            let sig = if live_dump {
                libc::SIGKILL
            } else {
                libc::SIGINT
            };
            // SAFETY: as above.
            unsafe { libc::kill(t.bt.id() as i32, sig) };
            fin
        }
        None => {
            t.stopping();
            // SAFETY: as above.
            unsafe { libc::kill(t.bt.id() as i32, libc::SIGINT) };
            t.finished(Duration::from_secs(600))
        }
    };
    let stop_to_closed = t_stop.elapsed();
    let Some(mut fin) = fin else {
        let _ = t.bt.kill();
        bail!("bpftrace's output did not end: the log may be incomplete");
    };
    // A last copy of every map still there, and no process left stopped at its exit.
    fin.keeper.refresh();
    for pid in &fin.unreleased {
        // SAFETY: kill(2) of a process the script stopped.
        unsafe { libc::kill(*pid as i32, libc::SIGCONT) };
    }
    let detaching = t.running();
    let mut loaded = watch.map(loads::Watch::finish).unwrap_or_default();
    for (pid, files) in loads::from_keeper(&fin.keeper, &bases) {
        loaded.entry(pid).or_default().extend(files);
    }
    say_other_copies(&loaded, &probed, fin.threads);
    // A command still running after a stop (Ctrl-C, --duration) is left running.
    let command_status = match (command_status, child.as_mut()) {
        (Some(s), _) => Some(s),
        (None, Some(c)) => c.try_wait().ok().flatten(),
        (None, None) => None,
    };
    // Drained: a record stored and never printed is a gap in its thread's numbers.
    let lost = if matches!(opts.emit, Emit::Drained { .. }) {
        fin.seqs
            .iter()
            .map(|(tid, n)| n.saturating_sub(fin.stored.get(tid).copied().unwrap_or(0)))
            .sum()
    } else {
        0
    };
    let failure = t.log_failed.clone().or(fin.early.clone());
    if failure.is_some() {
        t.stopping();
        if t.log_failed.is_some() {
            let _ = t.bt.kill();
        }
    }
    let command_status = match (&failure, command_status, child.as_mut()) {
        (Some(_), None, Some(c)) => wait_untraced(c),
        (_, s, _) => s,
    };
    if failure.is_some() {
        // bpftrace died: a process it held at its exit is not left stopped.
        restart::release_stopped(&t.traced);
    }
    Ok(Recorded {
        restarts: t.respawn.map(|r| r.said).unwrap_or_default(),
        failure,
        script,
        lines: fin.lines,
        maps_dir: fin.keeper.dir().to_path_buf(),
        processes: fin.keeper.processes(),
        held: fin.keeper.held,
        command_status,
        lost,
        dumps: t.dumps,
        stopped_by,
        stop_to_closed,
        detaching,
        cost,
    })
}

/// Runs until the command exits, a stop is asked for, the duration passes or bpftrace ends;
/// drains, dumps and watches for hangs meanwhile. Returns the command's status, if it ended,
/// and what stopped tracing.
fn run_until_stop(
    t: &mut Tracer,
    opts: &RecordOptions,
    names: &HashMap<u32, String>,
    child: &mut Option<Child>,
    started: Instant,
) -> Result<(Option<ExitStatus>, String)> {
    let mut hang = opts.on_hang.map(hang::HangWatch::new);
    let poll = opts.on_hang.map(hang::poll_period);
    let mut last_poll = Instant::now();
    let mut polls = 0u64;
    loop {
        if let Some(c) = child.as_mut() {
            if let Some(st) = c.try_wait()? {
                return Ok((Some(st), format!("the command exited ({st})")));
            }
        }
        if let Some(sig) = signals::stop_requested() {
            return Ok((None, format!("signal {sig}")));
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok((None, "--duration".into()));
        }
        if t.broken() {
            if t.restart() {
                continue;
            }
            return Ok((None, "bpftrace's end".into()));
        }
        if !t.running() {
            return Ok((None, "bpftrace exited".into()));
        }
        let Some(chan) = t.chan else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        if let Emit::Drained { period_ms } = opts.emit {
            let period = Duration::from_millis(u64::from(period_ms));
            // A drain at a time: the next is asked for once the last one is read (if bpftrace
            // falls behind, drains come less often and the maps hold more).
            let stuck = t
                .draining
                .is_some_and(|d| d.elapsed() > Duration::from_secs(5));
            if (t.draining.is_none() || stuck) && t.last_drain.elapsed() >= period {
                chan.drain();
                t.draining = Some(Instant::now());
                t.last_drain = Instant::now();
            }
        }
        if let Some(need) = t.room_needed {
            if room_again(t, opts, need) {
                t.dumps += 1;
                eprintln!("bthost: there is room for the log again: dumping the flight recorder");
                dump(t, chan, u64::from(t.dumps));
            }
        }
        if matches!(opts.emit, Emit::Ring { .. }) && signals::take_dump_request() {
            t.dumps += 1;
            eprintln!("bthost: dumping the flight recorder (asked for)");
            dump(t, chan, u64::from(t.dumps));
            take_stacks(t, "asked");
        }
        if let (Some(p), Some(_)) = (poll, hang.as_ref()) {
            if last_poll.elapsed() >= p {
                last_poll = Instant::now();
                polls += 1;
                chan.status(polls);
            }
        }
        match t.rx.recv_timeout(Duration::from_millis(10)) {
            Ok(Seen::Status(s)) => {
                let why = hang.as_mut().map(|h| h.feed(&s)).unwrap_or_default();
                if !why.is_empty() {
                    t.dumps += 1;
                    eprintln!(
                        "bthost: {}: dumping the flight recorder",
                        hang_reasons(&why, opts.on_hang.unwrap_or_default(), names)
                    );
                    dump(t, chan, u64::from(t.dumps));
                    take_stacks(t, "on-hang");
                }
            }
            Ok(s) => t.note(s),
            Err(_) => {}
        }
    }
}

/// After a dump taken back for want of room (crate::record::full): whether the log's file
/// system has room for it again (twice what it reached, and 1 MiB at least), checked every
/// second. Said once when it is taken back.
fn room_again(t: &mut Tracer, opts: &RecordOptions, need: u64) -> bool {
    if t.last_room_check
        .is_some_and(|c| c.elapsed() < Duration::from_secs(1))
    {
        return false;
    }
    if t.last_room_check.is_none() {
        eprintln!(
            "bthost: tracing goes on; the flight recorder is dumped again when {} has room",
            opts.log.display()
        );
    }
    t.last_room_check = Some(Instant::now());
    let dir = match opts.log.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let room = full::free_bytes(&dir).is_some_and(|b| b >= need.saturating_mul(2).max(1 << 20));
    if room {
        t.room_needed = None;
        t.last_room_check = None;
    }
    room
}

/// Tracing stopped early while the command runs: the command is not killed (it is the job;
/// tracing was only watching it), and record waits for it rather than exiting at once. Under a
/// batch script (`sbatch`: `bthost record -o LOG -- ./train.py`) record's exit ends the
/// script, and the scheduler would kill the job's processes with it; waiting also keeps the
/// command's exit status for record's own. Ctrl-C (or SIGTERM) to record stops the wait, and
/// leaves the command running, as after any stop.
fn wait_untraced(c: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(st)) = c.try_wait() {
        return Some(st);
    }
    eprintln!(
        "bthost: the command (pid {}) is still running, untraced; record waits for it to exit \
         (SIGTERM to record stops the wait and leaves it running)",
        c.id()
    );
    loop {
        match c.try_wait() {
            Ok(Some(st)) => {
                eprintln!("bthost: the command exited ({st}), untraced");
                return Some(st);
            }
            Ok(None) if signals::stop_requested().is_none() => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                eprintln!("bthost: the command (pid {}) is left running", c.id());
                return None;
            }
        }
    }
}

/// Why the hang watch fired, in words: `calls in flight for 2.0 s with none completing`, `no
/// group operation completed for 2.0 s while pid 1234's ncclAllReduce is pending`.
fn hang_reasons(why: &[hang::Reason], after: Duration, names: &HashMap<u32, String>) -> String {
    let secs = after.as_secs_f64();
    let said: Vec<String> = why
        .iter()
        .map(|r| match r {
            hang::Reason::Quiet => format!("calls in flight for {secs:.1} s with none completing"),
            hang::Reason::Pending { pid, id } => format!(
                "no group operation completed for {secs:.1} s while pid {pid}'s {} is pending",
                names.get(id).map_or("group operation", String::as_str)
            ),
        })
        .collect();
    said.join("; ")
}

/// Each pack's probed files, as record compares them with what the processes loaded.
fn probed_files(reg: &Registry, built: &crate::compose::Built) -> Vec<loads::Probed> {
    built
        .libraries
        .iter()
        .filter_map(|(pack, choice)| {
            let p = &reg.entries.get(pack)?.pack;
            Some(loads::Probed {
                pack: pack.clone(),
                bases: crate::library::search::pack_bases(p),
                names: std::iter::once(&p.library.soname)
                    .chain(p.library.also.iter())
                    .cloned()
                    .collect(),
                files: choice.probed.iter().map(|f| f.path.clone()).collect(),
            })
        })
        .collect()
}

/// Says which processes loaded another copy of a pack's library than the ones probed (their
/// calls were not seen), and why a log has no record: never "0 records" without a word why.
fn say_other_copies(loaded: &loads::Loaded, probed: &[loads::Probed], threads: u64) {
    let other = loads::mismatches(loaded, probed);
    for m in &other {
        eprintln!("{}", m.message());
    }
    if threads > 0 {
        return;
    }
    let on: Vec<String> = probed
        .iter()
        .map(|p| {
            let files: Vec<String> = p.files.iter().map(|f| f.display().to_string()).collect();
            format!("{} on {}", p.pack, files.join(" and "))
        })
        .collect();
    if !other.is_empty() {
        eprintln!(
            "bthost: warning: the log has 0 records: the traced processes loaded other copies of \
             the libraries than the ones probed ({}), as said above",
            on.join("; ")
        );
    } else if loaded.is_empty() {
        eprintln!(
            "bthost: warning: the log has 0 records: no traced process was seen loading the \
             packs' libraries (the probes were: {}); does the job use them, or load them from \
             a copy this machine's search does not find (--lib PACK=PATH, --python PY)?",
            on.join("; ")
        );
    } else {
        let pids: Vec<String> = loaded.keys().take(8).map(|p| p.to_string()).collect();
        eprintln!(
            "bthost: warning: the log has 0 records: {} {} loaded the probed files ({}), but \
             called none of the probed functions while tracing ran",
            if loaded.len() == 1 { "pid" } else { "pids" },
            pids.join(", "),
            on.join("; ")
        );
    }
}
