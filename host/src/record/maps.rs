//! Copies of traced processes' memory maps (`LOG.maps/PID.maps`), so that `convert` can
//! symbolize code addresses after the processes are gone.
//!
//! A copy is the union of every snapshot of /proc/PID/maps: a library loaded late (dlopen) is
//! added, and a process that exited keeps its last map. Snapshots are taken at each thread's
//! first record (its `T` line), after a `dlopen` (`#M`), and at the exit of a process whose
//! map had not been copied yet: the script holds it there (SIGSTOP, `#X`) until the copy is
//! made and record sends SIGCONT (crate::compose::hooks).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::safe_out::{OutDir, OutError};

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

#[derive(Debug)]
pub struct MapsKeeper {
    dir: OutDir,
    files: BTreeMap<u32, (Vec<String>, HashSet<String>)>,
    /// Snapshots that failed because the process had gone.
    pub missed: u32,
    /// Processes held at their exit and released.
    pub held: u32,
}

impl MapsKeeper {
    /// Keeps the copies in `LOG.maps/`, beside `log` in `log_dir`.
    pub fn new(log_dir: &OutDir, log_name: &str) -> Result<MapsKeeper, OutError> {
        Ok(MapsKeeper {
            dir: log_dir.subdir(&format!("{log_name}.maps"))?,
            files: BTreeMap::new(),
            missed: 0,
            held: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Processes whose map was copied.
    pub fn processes(&self) -> usize {
        self.files.len()
    }

    /// The maps copied by this recording, by pid: each line once.
    pub fn copied(&self) -> impl Iterator<Item = (u32, &[String])> {
        self.files
            .iter()
            .map(|(p, (lines, _))| (*p, lines.as_slice()))
    }

    /// Takes a snapshot of `pid`'s map; rewrites its file if it has new lines. False if the
    /// process has gone.
    pub fn snapshot(&mut self, pid: u32) -> bool {
        // A process past the release of its memory reads as empty: gone as well.
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if text.is_empty() {
            if !self.files.contains_key(&pid) {
                self.missed += 1;
            }
            return false;
        }
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
            let name = format!("{pid}.maps");
            match self.dir.create_file(&name) {
                Ok(mut f) => {
                    if let Err(e) = f.write_all(body.as_bytes()) {
                        eprintln!(
                            "bthost: warning: {}: {e}",
                            self.dir.path().join(name).display()
                        );
                    }
                }
                Err(e) => eprintln!("bthost: warning: {e}"),
            }
        }
        true
    }

    /// A last snapshot of every process still alive.
    pub fn refresh(&mut self) {
        let pids: Vec<u32> = self.files.keys().copied().collect();
        for pid in pids {
            self.snapshot(pid);
        }
    }
}
