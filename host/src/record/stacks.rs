//! The stacks `record` takes (crate::stacks) and keeps beside the log (`LOG.stacks`):
//! at every dump (`--on-hang`, `bthost dump`, SIGUSR1) and at the stop when calls are in
//! flight or a group operation is pending (the flight recorder's status says; with the other
//! strategies, which keep no status, at a stop that is not the command's own exit: a job still
//! running when the user stops tracing).
//!
//! Of every traced process alive, not only of those the report will name: the report is made
//! offline, from every node's log, and which rank is the straggler is known only there (the
//! rank that made no call is the one whose stack matters most, and its own log cannot tell).
//! The traced processes are those whose memory map record copied (LOG.maps/): the processes
//! that wrote a record. Each is held for well under a millisecond to a few (measured, in each
//! process's `pause_us`); `--no-stacks` takes none.

use std::fs::File;
use std::path::PathBuf;

use crate::safe_out::OutDir;
use crate::stacks::{format, Taker};

pub struct StackKeeper {
    taker: Taker,
    dir: OutDir,
    name: String,
    log: PathBuf,
    file: Option<File>,
    /// Stack takings, and the pauses (us) of every process held.
    pub takings: u32,
    pub pauses: Vec<u64>,
    /// ptrace was refused: no more tries.
    refused: bool,
}

impl StackKeeper {
    pub fn new(dir: &OutDir, log_name: &str) -> StackKeeper {
        StackKeeper {
            taker: Taker::new(),
            dir: dir.clone(),
            name: format!("{log_name}.stacks"),
            log: dir.path().join(log_name),
            file: None,
            takings: 0,
            pauses: Vec::new(),
            refused: false,
        }
    }

    /// The traced processes alive now (not record itself).
    fn traced(&self) -> Vec<u32> {
        let me = std::process::id();
        super::maps::recorded_maps(&self.log)
            .into_iter()
            .map(|(pid, _)| pid)
            .filter(|&p| p != me && std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect()
    }

    /// Takes the traced processes' stacks for dump `dump` and appends them to `LOG.stacks`.
    pub fn take(&mut self, dump: u64, why: &str) {
        if self.refused {
            return;
        }
        let pids = self.traced();
        if pids.is_empty() {
            return;
        }
        let t0 = std::time::Instant::now();
        let got = self.taker.take(&pids, dump, why);
        if self.taker.said_no_rights && got.iter().all(|p| p.threads.is_empty()) {
            // Said once (crate::stacks): recording goes on, without stacks from now on.
            self.refused = true;
            return;
        }
        self.takings += 1;
        let held: Vec<u64> = got
            .iter()
            .filter(|p| !p.threads.is_empty())
            .map(|p| p.pause_us)
            .collect();
        let (median, worst) = crate::commands::stacks::median_worst(held.clone());
        self.pauses.extend(held);
        if self.file.is_none() {
            match self.dir.create_file(&self.name) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    eprintln!("bthost: warning: no stacks kept: {e}");
                    self.refused = true;
                    return;
                }
            }
        }
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = format::write(f, &got) {
                eprintln!(
                    "bthost: warning: {}: {e}",
                    self.dir.path().join(&self.name).display()
                );
            }
        }
        eprintln!(
            "bthost: stacks of {} processes taken in {:.0} ms (each held {median} us median, \
             {worst} us at worst)",
            got.len(),
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
}
