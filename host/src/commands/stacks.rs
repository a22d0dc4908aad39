//! `bthost stacks PID...`: the stacks record takes at a dump, taken now and shown (each
//! thread's telling frames), with the pause each process saw; `--repeat N` takes them N times
//! and gives the pause's median and worst (the figure record's dumps cost the job).

use crate::stacks::{frames, ProcStacks, Taker};
use crate::symbolize::Symbolizer;

/// Median and worst of some pauses (us).
pub fn median_worst(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    match v.len() {
        0 => (0, 0),
        n => (v[n / 2], v[n - 1]),
    }
}

/// Takes the stacks `repeat` times; the last taking's stacks and every pause (us).
pub fn take(pids: &[u32], repeat: u32) -> (Vec<ProcStacks>, Vec<u64>) {
    let mut taker = Taker::new();
    let mut pauses = Vec::new();
    let mut last = Vec::new();
    for n in 0..repeat.max(1) {
        last = taker.take(pids, u64::from(n) + 1, "asked");
        pauses.extend(
            last.iter()
                .filter(|p| p.error.is_none())
                .map(|p| p.pause_us),
        );
    }
    (last, pauses)
}

/// The stacks in words: per process, each thread's telling frames.
pub fn render(stacks: &[ProcStacks]) -> String {
    let mut sym = Symbolizer::default();
    let mut out = String::new();
    for p in stacks {
        frames::add_maps(&mut sym, p.pid, p);
        out.push_str(&format!(
            "pid {} ({}): held {} us{}{}\n",
            p.pid,
            p.comm,
            p.pause_us,
            p.error
                .as_ref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default(),
            p.python_error
                .as_ref()
                .map(|e| format!("; no Python frames: {e}"))
                .unwrap_or_default()
        ));
        // The main thread first.
        let mut threads: Vec<_> = p.threads.iter().collect();
        threads.sort_by_key(|t| (t.tid != p.pid, t.tid));
        for t in threads {
            let named = frames::named(&mut sym, p.pid, t);
            out.push_str(&format!(
                "  thread {} ({}): {}\n",
                t.tid,
                t.comm,
                frames::summary(&named)
            ));
        }
    }
    out
}
