//! Clock anchors: where a log sits in time, so that several logs (one per node) go on one
//! timeline. bpftrace's `nsecs` is CLOCK_MONOTONIC, which each boot of each host starts anew;
//! `record` pairs it with CLOCK_REALTIME at the start and at the end of tracing, and says which
//! host and boot the log is from:
//!
//! ```text
//! #C start host=n1 boot=7f1c...-... mono=1234567 real=1764450000123456789 err=210
//! ```
//!
//! `err` bounds the pairing: CLOCK_REALTIME was read between two readings of CLOCK_MONOTONIC
//! that far apart (ns), and `mono` is their middle.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// `start` or `end` of tracing.
    pub at_end: bool,
    pub host: String,
    pub boot: String,
    pub mono: u64,
    pub real: u64,
    pub err: u64,
}

impl Anchor {
    /// Reads the clocks now.
    pub fn now(at_end: bool) -> Anchor {
        let read = |clock| {
            // SAFETY: clock_gettime fills a timespec.
            let mut t: libc::timespec = unsafe { std::mem::zeroed() };
            unsafe { libc::clock_gettime(clock, &mut t) };
            t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
        };
        let m1 = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
        let m2 = read(libc::CLOCK_MONOTONIC);
        Anchor {
            at_end,
            host: host_name(),
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|b| plain(b.trim()))
                .unwrap_or_else(|_| "unknown".into()),
            mono: m1 + (m2 - m1) / 2,
            real,
            err: (m2 - m1).div_ceil(2),
        }
    }

    /// Parses a `#C ...` line.
    pub fn parse(line: &str) -> Result<Anchor, String> {
        let mut w = line.split_ascii_whitespace();
        if w.next() != Some("#C") {
            return Err("not a clock anchor".into());
        }
        let at_end = match w.next() {
            Some("start") => false,
            Some("end") => true,
            other => return Err(format!("clock anchor of {other:?}, not start or end")),
        };
        let mut a = Anchor {
            at_end,
            host: String::new(),
            boot: String::new(),
            mono: 0,
            real: 0,
            err: 0,
        };
        let num = |k: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("clock anchor: {k}={v:?} is not a number"))
        };
        for kv in w {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("clock anchor: {kv:?} is not key=value"))?;
            match k {
                "host" => a.host = v.to_string(),
                "boot" => a.boot = v.to_string(),
                "mono" => a.mono = num(k, v)?,
                "real" => a.real = num(k, v)?,
                "err" => a.err = num(k, v)?,
                _ => {} // later additions
            }
        }
        if a.host.is_empty() || a.boot.is_empty() || a.real == 0 {
            return Err("clock anchor without host, boot or real time".into());
        }
        Ok(a)
    }

    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, at this anchor (ns).
    pub fn offset(&self) -> i128 {
        i128::from(self.real) - i128::from(self.mono)
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#C {} host={} boot={} mono={} real={} err={}",
            if self.at_end { "end" } else { "start" },
            self.host,
            self.boot,
            self.mono,
            self.real,
            self.err
        )
    }
}

/// Only plain characters: a host name goes into the log and the reports as one word.
fn plain(s: &str) -> String {
    let p: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if p.is_empty() {
        "unknown".into()
    } else {
        p
    }
}

/// The node's name as given (`record --node`), for the anchors written from then on.
static NODE_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this node (`record --node NAME`): a recorder started through sudo has no Slurm
/// environment to read it from.
pub fn set_node_name(name: &str) {
    let _ = NODE_NAME.set(plain(name));
}

/// The node's name: as given, else Slurm's (`SLURMD_NODENAME`, set in a job's steps) where
/// there is one, since several emulated nodes may share a host; else the host's name.
fn host_name() -> String {
    if let Some(n) = NODE_NAME.get() {
        return n.clone();
    }
    match std::env::var("SLURMD_NODENAME") {
        Ok(n) if !n.is_empty() => plain(&n),
        _ => hostname(),
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname into a buffer of the given length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "unknown".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    plain(&String::from_utf8_lossy(&buf[..n]))
}

/// The clock anchors of the log at `path`, read from its first lines and its last 8 KiB
/// (where `record` writes them), without reading the whole log.
pub fn read_from(path: &std::path::Path) -> std::io::Result<Vec<Anchor>> {
    use std::io::{BufRead, Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    for l in std::io::BufReader::new(&f).lines().take(4) {
        if let Ok(a) = Anchor::parse(&l?) {
            out.push(a);
        }
    }
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(8192)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    for l in String::from_utf8_lossy(&tail).lines().rev().take(8) {
        if let Ok(a) = Anchor::parse(l) {
            if a.at_end {
                out.push(a);
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let a = Anchor::now(false);
        assert!(a.err < 1_000_000_000, "{a}");
        assert_eq!(Anchor::parse(&a.to_string()).unwrap(), a);
        let e = Anchor {
            at_end: true,
            host: "n1".into(),
            boot: "b".into(),
            mono: 5,
            real: 105,
            err: 1,
        };
        assert_eq!(e.to_string(), "#C end host=n1 boot=b mono=5 real=105 err=1");
        assert_eq!(e.offset(), 100);
        for bad in [
            "#C middle host=a",
            "#C start host=a boot=b mono=x real=1",
            "#C start mono=1",
        ] {
            assert!(Anchor::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(plain("node 1/x"), "node_1_x");
    }
}
