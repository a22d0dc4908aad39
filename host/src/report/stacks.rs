//! The stacks `record` took at its dumps (crate::stacks, `LOG.stacks`), as the report shows
//! them under the members it names as missing or waiting: each thread's telling frames
//! (crate::stacks::frames), and threads alike across ranks said once with the rank set
//! (`ranks 0-1,3 main: hipMemcpy <- ... <- train_step (train.py:31)`), so that 64 ranks in two
//! states are a few lines.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::gather::ProcKey;
use super::ranks::compress;
use crate::stacks::{format, frames};
use crate::symbolize::Symbolizer;

/// Distinct stack lines shown under one member line at most (the rest are counted).
const MAX_LINES: usize = 6;

/// One thread's stack, named.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadView {
    pub tid: u32,
    /// `main` (the process's first thread), else the thread's name.
    pub thread: String,
    /// The telling frames, innermost first, joined by ` <- `.
    pub summary: String,
    /// Every frame, innermost first (native, then Python where known).
    pub frames: Vec<String>,
}

/// One process's stacks at its log's last dump that took them.
#[derive(Clone, Debug, Serialize)]
pub struct ProcView {
    /// When they were taken, on its log's clock (ns), and for which dump.
    pub time: u64,
    pub why: String,
    pub pause_us: u64,
    pub threads: Vec<ThreadView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Stacks {
    pub by_proc: BTreeMap<ProcKey, ProcView>,
}

impl Stacks {
    /// The stacks beside each log (none for a log without them).
    pub fn load(logs: &[PathBuf]) -> Stacks {
        let mut s = Stacks::default();
        for (i, log) in logs.iter().enumerate() {
            let Ok(i) = u16::try_from(i) else { break };
            let (all, _bad) = format::read(log);
            let mut sym = Symbolizer::default();
            for (pid, p) in format::last_by_pid(all) {
                frames::add_maps(&mut sym, pid, &p);
                let threads = p
                    .threads
                    .iter()
                    .map(|t| {
                        let named = frames::named(&mut sym, pid, t);
                        ThreadView {
                            tid: t.tid,
                            thread: if t.tid == pid {
                                "main".into()
                            } else if t.comm.is_empty() || t.comm == p.comm {
                                "thread".into()
                            } else {
                                t.comm.clone()
                            },
                            summary: frames::summary(&named),
                            frames: named.into_iter().map(|f| f.text).collect(),
                        }
                    })
                    .collect();
                s.by_proc.insert(
                    (i, pid),
                    ProcView {
                        time: p.time,
                        why: p.why,
                        pause_us: p.pause_us,
                        threads,
                        error: p.error,
                        python_error: p.python_error,
                    },
                );
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.by_proc.is_empty()
    }

    /// The stacks of some members, as lines under theirs: threads alike (by name and
    /// frames) once, with their ranks; the main threads first.
    pub fn lines(&self, members: &[(u32, ProcKey)], indent: &str) -> Vec<String> {
        // Threads alike: the same frames, in the main thread or not; their names are said
        // once when they agree but for numbers (`hipq-strm-0`, `hipq-strm-3`: `hipq-strm-*`).
        let mut alike: BTreeMap<(bool, String), (Vec<u32>, Vec<String>)> = BTreeMap::new();
        let mut without: Vec<u32> = Vec::new();
        for &(rank, p) in members {
            let Some(v) = self.by_proc.get(&p) else {
                continue;
            };
            if v.threads.is_empty() {
                without.push(rank);
            }
            for t in &v.threads {
                let (ranks, names) = alike
                    .entry((t.thread != "main", t.summary.clone()))
                    .or_default();
                if !ranks.contains(&rank) {
                    ranks.push(rank);
                }
                let name: String = t
                    .thread
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '*' } else { c })
                    .collect();
                let name = name.replace("**", "*");
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let alike: BTreeMap<(bool, String, String), Vec<u32>> = alike
            .into_iter()
            .map(|((side, summary), (ranks, names))| {
                let thread = if names.len() == 1 {
                    names[0].clone()
                } else {
                    "threads".to_string()
                };
                ((side, thread, summary), ranks)
            })
            .collect();
        let mut out: Vec<String> = Vec::new();
        let n = alike.len();
        for ((_, thread, summary), ranks) in alike.into_iter().take(MAX_LINES) {
            out.push(format!(
                "{indent}rank{} {} {thread}: {summary}",
                if ranks.len() == 1 { "" } else { "s" },
                compress(ranks)
            ));
        }
        if n > MAX_LINES {
            out.push(format!("{indent}... and {} more stacks", n - MAX_LINES));
        }
        if !without.is_empty() {
            out.push(format!(
                "{indent}rank{} {}: no stacks (see LOG.stacks: the process could not be held)",
                if without.len() == 1 { "" } else { "s" },
                compress(without)
            ));
        }
        if !out.is_empty() {
            out.insert(0, format!("{indent}stacks at the dump:"));
            let inner = format!("{indent}  ");
            for l in out.iter_mut().skip(1) {
                l.insert_str(0, "  ");
                debug_assert!(l.starts_with(&inner));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(threads: &[(u32, &str, &str)]) -> ProcView {
        ProcView {
            time: 0,
            why: "on-hang".into(),
            pause_us: 100,
            threads: threads
                .iter()
                .map(|&(tid, thread, summary)| ThreadView {
                    tid,
                    thread: thread.into(),
                    summary: summary.into(),
                    frames: vec![],
                })
                .collect(),
            error: None,
            python_error: None,
        }
    }

    #[test]
    fn alike_threads_once_with_their_ranks() {
        let mut s = Stacks::default();
        for r in 0..64u32 {
            let main = if r == 17 {
                "load_batch (t.py:4)"
            } else {
                "hipMemcpy <- step (t.py:9)"
            };
            s.by_proc.insert(
                (0, 100 + r),
                view(&[
                    (100 + r, "main", main),
                    (200 + r, "thread", "sleep_ms <- watchdog"),
                ]),
            );
        }
        let members: Vec<(u32, ProcKey)> = (0..64).map(|r| (r, (0, 100 + r))).collect();
        let lines = s.lines(&members, "    ");
        assert_eq!(
            lines,
            vec![
                "    stacks at the dump:",
                "      ranks 0-16,18-63 main: hipMemcpy <- step (t.py:9)",
                "      rank 17 main: load_batch (t.py:4)",
                "      ranks 0-63 thread: sleep_ms <- watchdog",
            ]
        );
        assert!(s.lines(&[(0, (1, 5))], "  ").is_empty(), "no stacks for it");
    }
}
