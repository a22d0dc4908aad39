//! `bthost record`: build the script for the installed bpftrace, run it (system-wide: the
//! ranks of a job are many processes), write its output to the log as it comes, and keep a
//! copy of each traced process's memory map beside the log (`LOG.maps/PID.maps`) so that
//! `convert` can symbolize code addresses after the processes are gone. With a command, the
//! command starts once every probe is attached, and tracing stops (SIGINT: bpftrace's END
//! writes the calls still in flight) when it exits; without one, at Ctrl-C.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};

use super::build::{self, BuildOptions};
use crate::log::{classify, LineKind};
use crate::registry::Registry;

pub struct RecordOptions {
    pub build: BuildOptions,
    pub bpftrace_bin: PathBuf,
    pub log: PathBuf,
    /// The workload to run while tracing; empty: trace until Ctrl-C.
    pub command: Vec<String>,
}

pub struct Recorded {
    pub script: PathBuf,
    pub lines: u64,
    pub maps_dir: PathBuf,
    pub processes: usize,
    /// The workload's exit status, when there was one.
    pub command_status: Option<ExitStatus>,
}

/// Where `record` keeps the memory maps of a log's processes.
pub fn maps_dir(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".maps");
    PathBuf::from(p)
}

/// The maps files recorded beside `log`, as (pid, path).
pub fn recorded_maps(log: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(maps_dir(log)) else {
        return Vec::new();
    };
    let mut v: Vec<(u32, PathBuf)> = rd
        .filter_map(|e| {
            let p = e.ok()?.path();
            let pid = p
                .file_name()?
                .to_str()?
                .strip_suffix(".maps")?
                .parse()
                .ok()?;
            Some((pid, p))
        })
        .collect();
    v.sort();
    v
}

mod sys {
    //! The two libc calls this needs, declared here rather than pulling in a crate.
    extern "C" {
        pub fn kill(pid: i32, sig: i32) -> i32;
        pub fn signal(sig: i32, handler: usize) -> usize;
    }
    pub const SIGINT: i32 = 2;

    extern "C" fn ignore(_: i32) {}

    /// Ctrl-C reaches the whole foreground group: bpftrace must get it (its END prints the
    /// calls in flight), and bthost must live on to save the rest of the log. A handler
    /// (unlike SIG_IGN) is reset in the children at exec, so bpftrace keeps its own.
    pub fn survive_sigint() {
        // SAFETY: installs a handler that does nothing, which is async-signal-safe.
        unsafe { signal(SIGINT, ignore as extern "C" fn(i32) as usize) };
    }

    pub fn interrupt(pid: u32) {
        // SAFETY: kill(2) with a pid of our own child.
        unsafe { kill(pid as i32, SIGINT) };
    }
}

/// What the reader thread tells the main thread.
enum Seen {
    /// BEGIN printed the header (bpftrace then attaches the other probes).
    Header,
    /// The sentinel probe fired: the probes declared before it are attached.
    Attached,
    /// END ran: bpftrace is stopping.
    End,
}

/// Called by bthost while it waits for bpftrace to attach: the script's last probe is on
/// this function. bpftrace runs BEGIN before it attaches the other probes (and attaches them
/// one by one, in the order the script declares them), so the header alone does not say that
/// tracing has started; this probe firing does.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_attached_sentinel(n: u64) -> u64 {
    std::hint::black_box(n)
}

/// The line the sentinel probe prints, once.
const ATTACHED_LINE: &[u8] = b"#A all probes attached";

/// The sentinel probe, on this very executable, or None when its path cannot be written into
/// a script safely (it is not validated pack text, so only plain path characters pass).
fn sentinel_probe() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.to_str()?;
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b));
    // A stripped bthost has no symbol to probe, and bpftrace would refuse the whole script.
    let probeable = crate::library::symbols::functions(&exe)
        .map(|f| f.probeable("bthost_attached_sentinel"))
        .unwrap_or(false);
    if !plain || !probeable {
        return None;
    }
    Some(format!(
        "\n// bthost record: the last probe; when it fires, the others are attached.\n\
         uprobe:{path}:bthost_attached_sentinel\n{{\n\tprintf(\"{}\\n\");\n}}\n",
        String::from_utf8_lossy(ATTACHED_LINE)
    ))
}

pub fn record(reg: &Registry, opts: &RecordOptions) -> Result<Recorded> {
    let built = build::build(reg, &opts.build)?;
    build::warn_left_out(&built);
    let mut script = opts.log.as_os_str().to_owned();
    script.push(".bt");
    let script = PathBuf::from(script);
    let mut built = built;
    let sentinel = sentinel_probe();
    if let Some(probe) = &sentinel {
        built.script.push_str(probe);
    }
    build::write(&built, &script)?;
    let maps = maps_dir(&opts.log);
    std::fs::create_dir_all(&maps).with_context(|| format!("cannot create {}", maps.display()))?;
    let log =
        File::create(&opts.log).with_context(|| format!("cannot create {}", opts.log.display()))?;

    sys::survive_sigint();
    let mut bt = Command::new(&opts.bpftrace_bin)
        .args(["-B", "line"])
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", opts.bpftrace_bin.display()))?;
    let out = bt.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let maps_for_reader = maps.clone();
    let reader = std::thread::spawn(move || -> Result<(u64, MapsKeeper)> {
        let mut keeper = MapsKeeper::new(maps_for_reader);
        let mut r = BufReader::with_capacity(1 << 20, out);
        let mut log = std::io::BufWriter::with_capacity(1 << 20, log);
        let mut line = Vec::new();
        let mut lines = 0u64;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            lines += 1;
            // Flushed whenever bpftrace has nothing more in the pipe: under load the log is
            // written in large blocks, and otherwise as it comes, so a killed bthost loses
            // nothing that bpftrace printed before a pause.
            log.write_all(&line)?;
            if r.buffer().is_empty() {
                log.flush()?;
            }
            if line.starts_with(b"#bthost ") {
                let _ = tx.send(Seen::Header);
            } else if line.starts_with(ATTACHED_LINE) {
                let _ = tx.send(Seen::Attached);
            } else if line.starts_with(b"#E ") {
                let _ = tx.send(Seen::End);
            } else if line.starts_with(b"T ") {
                // A thread's first call: the line the converter reads, read the same way.
                let text = String::from_utf8_lossy(&line);
                if let LineKind::Thread { pid, .. } = classify(text.trim_end_matches('\n')) {
                    keeper.snapshot(pid);
                }
            }
        }
        log.flush()?;
        Ok((lines, keeper))
    });

    // Wait for the probes to be attached (or for bpftrace to fail): call the sentinel until
    // its probe fires. Without a sentinel (an unusual path), wait for the header and then as
    // long as attaching takes bpftrace 0.17 per probe (~40 ms here), generously.
    let attached = match &sentinel {
        Some(_) => loop {
            bthost_attached_sentinel(1);
            match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(Seen::Attached) => break true,
                Ok(Seen::Header) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Stopped (Ctrl-C) or failed before it had attached everything.
                Ok(Seen::End) | Err(mpsc::RecvTimeoutError::Disconnected) => break false,
            }
        },
        None => {
            let header = loop {
                match rx.recv() {
                    Ok(Seen::Header) => break true,
                    Ok(Seen::Attached) => {}
                    Ok(Seen::End) | Err(_) => break false,
                }
            };
            if header {
                std::thread::sleep(std::time::Duration::from_millis(
                    100 * built.probe_count as u64,
                ));
            }
            header
        }
    };
    let mut command_status = None;
    if attached && !opts.command.is_empty() {
        let status = Command::new(&opts.command[0])
            .args(&opts.command[1..])
            .status()
            .with_context(|| format!("cannot run {}", opts.command[0]));
        stop(&bt, &rx);
        command_status = Some(status?);
    }
    let bt_status = bt.wait().context("waiting for bpftrace")?;
    let (lines, mut keeper) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the log writer panicked"))?
        .with_context(|| format!("writing {}", opts.log.display()))?;
    keeper.refresh();
    if !attached {
        bail!(
            "bpftrace ({}) exited with {bt_status} before attaching its probes; its messages are above",
            opts.bpftrace_bin.display()
        );
    }
    // bpftrace exits non-zero on SIGINT in some versions; the log is complete either way.
    Ok(Recorded {
        script,
        lines,
        maps_dir: maps,
        processes: keeper.files.len(),
        command_status,
    })
}

/// Stops bpftrace as Ctrl-C would (SIGINT: its END prints the calls in flight), again every
/// few seconds until END has run or bpftrace has exited: a SIGINT that reaches bpftrace 0.17
/// at the wrong moment is lost (seen here once, in the test suite), and a lost one would
/// leave `record` waiting for ever.
fn stop(bt: &std::process::Child, rx: &mpsc::Receiver<Seen>) {
    loop {
        sys::interrupt(bt.id());
        match rx.recv_timeout(std::time::Duration::from_secs(3)) {
            Ok(Seen::End) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(Seen::Header | Seen::Attached) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Copies of /proc/PID/maps, kept as the union of every snapshot: a library loaded late
/// (dlopen) is added, and a process that exited keeps its last map.
struct MapsKeeper {
    dir: PathBuf,
    files: BTreeMap<u32, (Vec<String>, HashSet<String>)>,
}

impl MapsKeeper {
    fn new(dir: PathBuf) -> MapsKeeper {
        MapsKeeper {
            dir,
            files: BTreeMap::new(),
        }
    }

    /// Takes a snapshot of `pid`'s map; rewrites its file if it has new lines.
    fn snapshot(&mut self, pid: u32) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return; // gone already: nothing to copy
        };
        let (lines, seen) = self.files.entry(pid).or_default();
        let mut grew = false;
        for l in text.lines() {
            if seen.insert(l.to_string()) {
                lines.push(l.to_string());
                grew = true;
            }
        }
        if grew {
            let mut body = lines.join("\n");
            body.push('\n');
            let _ = std::fs::write(self.dir.join(format!("{pid}.maps")), body);
        }
    }

    /// A last snapshot of every process still alive.
    fn refresh(&mut self) {
        let pids: Vec<u32> = self.files.keys().copied().collect();
        for pid in pids {
            self.snapshot(pid);
        }
    }
}
