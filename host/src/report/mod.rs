//! `bthost report`: the hang explained in a screenful, from one log or several (one per node):
//! per group of members (a communicator's ranks, matched across processes and hosts by its
//! identity), the operation where they diverge, who entered it and since when, who never did
//! and what those do instead; mismatched operations; sends without receives; deadlock cycles
//! across groups. Generic: the packs say, in their `[report]` section, which link key groups
//! members and which fields give the member, the size and the order (crate::pack::ReportSpec).
//!
//! Another consumer of the calls `convert` writes (crate::calls: the reading pass, the call
//! model and the completion of enqueued work), not a second parser.

pub mod analyze;
pub mod gather;
pub mod json;
pub mod ranks;
pub mod sites;
pub mod stacks;
pub mod text;

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use crate::calls::timeline::{self, Alignment, LogClock};
use crate::registry::Registry;
use gather::Gather;

pub struct ReportOptions {
    pub logs: Vec<PathBuf>,
    /// The logs come from one boot of one host: their clocks need no anchors.
    pub same_boot: bool,
    /// Threads to read on (crate::calls::read_calls): the same report whatever the number.
    pub jobs: usize,
}

/// One log, as the report knows it.
#[derive(Clone, Debug)]
pub struct LogInfo {
    pub path: PathBuf,
    pub host: String,
    pub boot: Option<String>,
    /// When tracing stopped (its END line), or its last record, on its own clock.
    pub stopped_at: u64,
    pub packs: Vec<String>,
    /// Tracing stopped early (the log's `#Q` mark), in words: when and why.
    pub stopped_early: Option<String>,
    /// Tracing stopped and started again (the log's `#G` marks, `record --restart`), each in
    /// words: when and why.
    pub gaps: Vec<String>,
    /// `record` began the log (its start anchor) but never ended it (no end anchor): its
    /// recorder was killed, or it is still being written.
    pub cut: bool,
}

impl LogInfo {
    /// Whether something of this log's host may be missing because tracing was not running.
    pub fn has_holes(&self) -> bool {
        self.stopped_early.is_some() || !self.gaps.is_empty() || self.cut
    }
}

/// A log's early stop in words: `at 12.3 s into tracing: bpftrace was killed by SIGKILL ...`.
pub fn early_stop(stats: &crate::decode::Stats) -> Option<String> {
    let (time, why) = stats.stopped_early.as_ref()?;
    let start = stats.anchors.iter().find(|a| !a.at_end);
    Some(match start {
        Some(a) => format!(
            "at {:.1} s into tracing: {why}",
            time.saturating_sub(a.mono) as f64 / 1e9
        ),
        None => format!("at {time:#x} (bpftrace's clock): {why}"),
    })
}

/// A log's gaps in words: `from 12.3 s to 14.5 s into tracing: bpftrace was killed by ...`.
pub fn gaps(stats: &crate::decode::Stats) -> Vec<String> {
    let start = stats.anchors.iter().find(|a| !a.at_end).map(|a| a.mono);
    stats
        .gaps
        .iter()
        .map(|(from, to, why)| match start {
            Some(s) => format!(
                "from {:.1} s to {:.1} s into tracing: {why}",
                from.saturating_sub(s) as f64 / 1e9,
                to.saturating_sub(s) as f64 / 1e9
            ),
            None => format!("from {from:#x} to {to:#x} (bpftrace's clock): {why}"),
        })
        .collect()
}

/// What the report is of: the logs and how they were placed on one timeline.
pub struct Context {
    pub logs: Vec<LogInfo>,
    pub alignment: Alignment,
}

/// The `[report]` specs of the packs installed here, as (pack, spec).
pub fn specs(reg: &Registry) -> Vec<(String, crate::pack::ReportSpec)> {
    reg.entries
        .values()
        .filter_map(|e| e.pack.report.clone().map(|s| (e.pack.name.clone(), s)))
        .collect()
}

/// The `[completion]` specs of the packs installed here, as (pack, spec).
pub fn completion_specs(reg: &Registry) -> Vec<(String, crate::pack::completion::CompletionSpec)> {
    reg.entries
        .values()
        .filter_map(|e| e.pack.completion.clone().map(|s| (e.pack.name.clone(), s)))
        .collect()
}

/// Reads every log once and says what they show.
pub fn read(reg: &Registry, opts: &ReportOptions) -> Result<(Context, Gather)> {
    if opts.logs.is_empty() {
        bail!("no log given");
    }
    crate::calls::sources::check_distinct(&opts.logs)?;
    let mut gather = Gather::new(specs(reg), completion_specs(reg));
    let mut logs = Vec::new();
    let mut clocks = Vec::new();
    for (i, path) in opts.logs.iter().enumerate() {
        let log = u16::try_from(i).context("too many logs")?;
        let (read, g) = crate::calls::read_calls(reg, path, log, gather, opts.jobs)?;
        gather = g;
        let clock = LogClock::from_anchors(&read.stats.anchors);
        let host = clock
            .as_ref()
            .map(|c| c.host.clone())
            .unwrap_or_else(|| format!("log{}", i + 1));
        gather.name_procs(&host, &read.threads);
        if let Some(first) = logs.first() {
            let first: &LogInfo = first;
            if first.packs != read.packs {
                bail!(
                    "{} was written with packs {}, {} with {}: the report joins logs of the same packs \
                     (record every node with the same --packs)",
                    first.path.display(),
                    first.packs.join(","),
                    path.display(),
                    read.packs.join(",")
                );
            }
        }
        logs.push(LogInfo {
            path: path.clone(),
            host,
            boot: clock.as_ref().map(|c| c.boot.clone()),
            // Calls made while tracing stopped can end after its mark: the later of the two.
            stopped_at: read.stats.stopped_at.unwrap_or(0).max(read.t_last),
            packs: read.packs,
            stopped_early: early_stop(&read.stats),
            gaps: gaps(&read.stats),
            cut: read.stats.anchors.iter().any(|a| !a.at_end)
                && !read.stats.anchors.iter().any(|a| a.at_end),
        });
        clocks.push((path.display().to_string(), clock));
    }
    let alignment = timeline::align(&clocks, opts.same_boot).map_err(anyhow::Error::msg)?;
    gather.stacks = stacks::Stacks::load(&opts.logs);
    Ok((Context { logs, alignment }, gather))
}

/// The report's text and its findings.
pub fn run(reg: &Registry, opts: &ReportOptions) -> Result<(Context, Gather, analyze::Findings)> {
    let (cx, mut gather) = read(reg, opts)?;
    let stops: Vec<u64> = cx.logs.iter().map(|l| l.stopped_at).collect();
    let findings = analyze::analyze(&gather, &stops);
    gather.sites = sites::Sites::load(&opts.logs, &findings);
    Ok((cx, gather, findings))
}
