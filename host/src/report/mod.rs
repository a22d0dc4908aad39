//! `bthost report`: the hang explained in a screenful, from one log or several (one per node):
//! per group of members (a communicator's ranks, matched across processes and hosts by its
//! identity), the operation where they diverge, who entered it and since when, who never did
//! and what those do instead; mismatched operations; sends without receives; deadlock cycles
//! across groups. Generic: the packs say, in their `[report]` section, which link key groups
//! members and which fields give the member, the size and the order (crate::pack::ReportSpec).
//!
//! Another consumer of the stream `convert` decodes (crate::convert's reading pass and call
//! model), not a second parser.

pub mod analyze;
pub mod gather;
pub mod json;
pub mod ranks;
pub mod text;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::registry::Registry;
use crate::timeline::{self, Alignment, LogClock};
use gather::Gather;

pub struct ReportOptions {
    pub logs: Vec<PathBuf>,
    /// The logs come from one boot of one host: their clocks need no anchors.
    pub same_boot: bool,
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

/// Reads every log once and says what they show.
pub fn read(reg: &Registry, opts: &ReportOptions) -> Result<(Context, Gather)> {
    if opts.logs.is_empty() {
        bail!("no log given");
    }
    check_distinct(&opts.logs)?;
    let mut gather = Gather::new(specs(reg));
    let mut logs = Vec::new();
    let mut clocks = Vec::new();
    for (i, path) in opts.logs.iter().enumerate() {
        let log = u16::try_from(i).context("too many logs")?;
        let read = crate::convert::read_calls(reg, path, log, &mut gather)?;
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
            stopped_at: read.stats.stopped_at.unwrap_or(read.t_last),
            packs: read.packs,
        });
        clocks.push((path.display().to_string(), clock));
    }
    let alignment = timeline::align(&clocks, opts.same_boot).map_err(anyhow::Error::msg)?;
    Ok((Context { logs, alignment }, gather))
}

/// The report's text and its findings.
pub fn run(reg: &Registry, opts: &ReportOptions) -> Result<(Context, Gather, analyze::Findings)> {
    let (cx, gather) = read(reg, opts)?;
    let stops: Vec<u64> = cx.logs.iter().map(|l| l.stopped_at).collect();
    let findings = analyze::analyze(&gather, &stops);
    Ok((cx, gather, findings))
}
