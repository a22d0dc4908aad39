//! The stacks as record keeps them: `LOG.stacks` beside the log, one JSON object per line and
//! per process and dump, with the time on bpftrace's clock (CLOCK_MONOTONIC, as the log's
//! records), the pause the process saw, each thread's code addresses and Python frames, and the
//! executable mappings at that moment (so that `convert` and `report` name the frames offline,
//! on another machine, even for a library loaded and unloaded since). Beside the log rather
//! than in it: the log is bpftrace's output, streamed by the line thread in its own format
//! that every reader classifies line by line; stacks are few, large and structured, and a log
//! without them reads exactly as before.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::python::PyFrame;

/// One thread's stack.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ThreadStack {
    pub tid: u32,
    #[serde(default)]
    pub comm: String,
    /// Code addresses, innermost first: the pc, then return addresses.
    #[serde(default)]
    pub pcs: Vec<u64>,
    /// Python frames, innermost first (py-spy), where the process runs CPython.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python: Vec<PyFrame>,
}

/// One process's stacks at one dump.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcStacks {
    /// The dump's number (as record counts them; the stop's is the last).
    pub dump: u64,
    /// What the dump was for: `on-hang`, `asked`, `stop`.
    pub why: String,
    /// When they were taken, on bpftrace's clock (ns).
    pub time: u64,
    pub pid: u32,
    #[serde(default)]
    pub comm: String,
    /// How long the process was held stopped (us).
    pub pause_us: u64,
    #[serde(default)]
    pub threads: Vec<ThreadStack>,
    /// Its executable file mappings then (`/proc/PID/maps` lines).
    #[serde(default)]
    pub maps: Vec<String>,
    /// Why its native stacks are missing or partial, if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why its Python frames are missing, if it runs CPython.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_error: Option<String>,
}

/// Where record keeps a log's stacks.
pub fn stacks_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".stacks");
    PathBuf::from(p)
}

/// Appends one dump's stacks.
pub fn write(out: &mut impl Write, stacks: &[ProcStacks]) -> std::io::Result<()> {
    for s in stacks {
        let line = serde_json::to_string(s).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// A log's stacks (none when it has no `.stacks` file); damaged lines are skipped and counted.
pub fn read(log: &Path) -> (Vec<ProcStacks>, u32) {
    let Ok(f) = std::fs::File::open(stacks_path(log)) else {
        return (Vec::new(), 0);
    };
    let (mut v, mut bad) = (Vec::new(), 0);
    for line in std::io::BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(s) => v.push(s),
            Err(_) => bad += 1,
        }
    }
    (v, bad)
}

/// The last stacks of each process of a log, by pid.
pub fn last_by_pid(all: Vec<ProcStacks>) -> std::collections::BTreeMap<u32, ProcStacks> {
    let mut m = std::collections::BTreeMap::new();
    for s in all {
        m.insert(s.pid, s);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back() {
        let dir = std::env::temp_dir().join(format!("bthost-stk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("a.log");
        let s = ProcStacks {
            dump: 1,
            why: "on-hang".into(),
            time: 5,
            pid: 42,
            pause_us: 120,
            threads: vec![ThreadStack {
                tid: 42,
                comm: "x".into(),
                pcs: vec![u64::MAX, 0x401000],
                python: vec![],
            }],
            ..Default::default()
        };
        let mut f = std::fs::File::create(stacks_path(&log)).unwrap();
        write(&mut f, &[s.clone(), ProcStacks { dump: 2, ..s }]).unwrap();
        writeln!(f, "{{damaged").unwrap();
        let (v, bad) = read(&log);
        assert_eq!((v.len(), bad), (2, 1));
        assert_eq!(v[0].threads[0].pcs, vec![u64::MAX, 0x401000]);
        assert_eq!(last_by_pid(v)[&42].dump, 2);
        assert_eq!(read(&dir.join("none.log")).0.len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
