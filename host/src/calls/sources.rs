//! The logs one conversion reads: one, or several (one per node) on one timeline. Several
//! logs are placed by their clock anchors (crate::calls::timeline); each log's processes and threads
//! are numbered apart, above Linux's largest pid (2^22: log i's pid p becomes (i+1) << 22 | p),
//! so that a pid seen on two hosts stays two processes; the traces and the text log name each
//! process by its host and its own pid.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::calls::timeline::{self, Alignment, LogClock};
use crate::log::anchor;

/// One log of the conversion.
pub struct Source {
    pub path: PathBuf,
    pub index: u16,
    /// What to add to its times (ns) to put them on the first log's clock.
    pub shift: i64,
    pub host: String,
}

pub struct Sources {
    pub list: Vec<Source>,
    pub alignment: Alignment,
}

impl Sources {
    /// Checks the logs (each once) and places them on one timeline.
    pub fn plan(logs: &[PathBuf], same_boot: bool) -> Result<Sources> {
        anyhow::ensure!(!logs.is_empty(), "no log given");
        check_distinct(logs)?;
        let mut clocks = Vec::new();
        for l in logs {
            let a = anchor::read_from(l).with_context(|| format!("cannot open {}", l.display()))?;
            clocks.push((l.display().to_string(), LogClock::from_anchors(&a)));
        }
        let alignment = timeline::align(&clocks, same_boot).map_err(anyhow::Error::msg)?;
        let list = logs
            .iter()
            .zip(&clocks)
            .zip(&alignment.shifts)
            .enumerate()
            .map(|(i, ((path, (_, clock)), &shift))| Source {
                path: path.clone(),
                index: i as u16,
                shift,
                host: clock
                    .as_ref()
                    .map_or_else(|| format!("log{}", i + 1), |c| c.host.clone()),
            })
            .collect();
        Ok(Sources { list, alignment })
    }

    pub fn several(&self) -> bool {
        self.list.len() > 1
    }

    /// A pid or tid of log `index`, numbered apart from the other logs' when there are several.
    pub fn id(&self, index: u16, id: u32) -> u32 {
        if self.several() {
            ((u32::from(index) + 1) << 22) | (id & PID_MASK)
        } else {
            id
        }
    }

    /// A time of log `index` on the common timeline.
    pub fn time(&self, index: u16, t: u64) -> u64 {
        t.saturating_add_signed(self.list[index as usize].shift)
    }

    /// Each process's host, by its number in the conversion (several logs only).
    pub fn hosts(&self, threads: &HashMap<u32, (u32, String)>) -> Option<HashMap<u32, String>> {
        if !self.several() {
            return None;
        }
        Some(
            threads
                .values()
                .map(|&(pid, _)| (pid, self.list[(pid >> 22) as usize - 1].host.clone()))
                .collect(),
        )
    }

    /// How the logs are named in the outputs.
    pub fn describe(&self) -> String {
        if !self.several() {
            return self.list[0].path.display().to_string();
        }
        // A few logs: each by its path. Many (a job's nodes): their folder and hosts.
        const LISTED: usize = 8;
        let logs = if self.list.len() <= LISTED {
            let each: Vec<String> = self
                .list
                .iter()
                .map(|s| format!("{} ({})", s.path.display(), s.host))
                .collect();
            each.join(", ")
        } else {
            let folder = |s: &Source| {
                s.path
                    .parent()
                    .map(|p| {
                        if p.as_os_str().is_empty() {
                            Path::new(".")
                        } else {
                            p
                        }
                    })
                    .map(Path::to_path_buf)
            };
            let first = folder(&self.list[0]);
            let place = match &first {
                Some(f) if self.list.iter().all(|s| folder(s).as_ref() == Some(f)) => {
                    format!("in {}", f.display())
                }
                _ => "in several folders".to_string(),
            };
            format!(
                "{place}, of hosts {}",
                crate::hostlist::compress(self.list.iter().map(|s| s.host.as_str()))
            )
        };
        format!(
            "{} logs: {logs}; clocks: {}",
            self.list.len(),
            self.alignment.how
        )
    }
}

/// A pid as its log wrote it: `convert` of several logs numbers each log's processes apart
/// above Linux's largest pid (2^22), which the report takes off.
pub const PID_MASK: u32 = (1 << 22) - 1;

/// Refuses a log given twice: the same file, or the same recording (its first clock anchor).
pub fn check_distinct(logs: &[PathBuf]) -> Result<()> {
    let mut seen: Vec<(PathBuf, Option<String>)> = Vec::new();
    for l in logs {
        let canon =
            std::fs::canonicalize(l).with_context(|| format!("cannot open {}", l.display()))?;
        let anchor = first_anchor(l);
        for (p, a) in &seen {
            if *p == canon || (anchor.is_some() && anchor == *a) {
                bail!(
                    "{} is given twice ({}): each node's log once",
                    l.display(),
                    if *p == canon {
                        "the same file".to_string()
                    } else {
                        format!("the same recording as {}", p.display())
                    }
                );
            }
        }
        seen.push((canon, anchor));
    }
    Ok(())
}

/// The log's first clock anchor line, which `record` writes first.
fn first_anchor(path: &Path) -> Option<String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .take(4)
        .map_while(Result::ok)
        .find(|l| l.starts_with("#C start "))
}
