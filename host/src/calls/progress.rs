//! Progress of a long conversion on stderr (records, MB/s, ETA), only when stderr is a
//! terminal: a redirected or piped stderr stays quiet.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: u64,
    start: Instant,
    last: Instant,
    shown: bool,
    enabled: bool,
}

impl Progress {
    /// For a file of `total` bytes.
    pub fn new(total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            start: now,
            last: now,
            shown: false,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// Called often (every few thousand lines); draws at most twice a second.
    pub fn update(&mut self, bytes: u64, records: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = bytes as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(bytes)) as f64 / rate
        } else {
            0.0
        };
        let pct = if self.total > 0 {
            100.0 * bytes as f64 / self.total as f64
        } else {
            0.0
        };
        eprint!(
            "\rbthost: {pct:5.1}%  {records} records  {:.0} MB/s  ETA {eta:.0} s   ",
            rate / 1e6
        );
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    /// Clears the progress line.
    pub fn finish(&mut self) {
        if self.shown {
            eprint!("\r{:70}\r", "");
        }
    }
}
