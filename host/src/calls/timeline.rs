//! Several logs on one timeline. Each log's times are its host's CLOCK_MONOTONIC (bpftrace's
//! `nsecs`), which starts anew at each boot of each host: logs of one boot share it exactly;
//! logs of different boots are placed by their clock anchors (crate::log::anchor), which pair
//! it with CLOCK_REALTIME. The common timeline is the first log's clock.
//!
//! How precise the placement is, is said with it: exact within one boot; across boots, the
//! anchors' pairing error plus how far each log's CLOCK_REALTIME moved against its
//! CLOCK_MONOTONIC during tracing (an NTP step or slew), on top of how well the hosts' clocks
//! agree (NTP, PTP), which no log can know.

use crate::log::anchor::Anchor;

/// Where one log is, as its anchors say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogClock {
    pub host: String,
    pub boot: String,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC at the start (ns).
    pub offset: i128,
    /// How far that difference moved between the start and the end (ns), and the pairing
    /// error of the anchors.
    pub uncertainty: u64,
}

impl LogClock {
    /// From a log's anchors (None: it has none).
    pub fn from_anchors(anchors: &[Anchor]) -> Option<LogClock> {
        let start = anchors.iter().find(|a| !a.at_end).or(anchors.first())?;
        let end = anchors.iter().rev().find(|a| a.at_end);
        let drift = end.map_or(0, |e| (e.offset() - start.offset()).unsigned_abs() as u64);
        Some(LogClock {
            host: start.host.clone(),
            boot: start.boot.clone(),
            offset: start.offset(),
            uncertainty: drift + start.err + end.map_or(0, |e| e.err),
        })
    }
}

/// The logs placed on one timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alignment {
    /// What to add to each log's times (ns) to put them on the first log's clock.
    pub shifts: Vec<i64>,
    /// The largest uncertainty of a shift (ns); 0: every log is of one boot (exact).
    pub uncertainty: u64,
    /// How the logs were placed, for the reader.
    pub how: String,
}

/// Places `logs` (name, clock) on one timeline. Logs without anchors cannot be placed, unless
/// there is one log, or the user says they all come from one boot of one host (`same_boot`).
pub fn align(logs: &[(String, Option<LogClock>)], same_boot: bool) -> Result<Alignment, String> {
    if logs.len() <= 1 || same_boot {
        return Ok(Alignment {
            shifts: vec![0; logs.len()],
            uncertainty: 0,
            how: if logs.len() <= 1 {
                "one log".into()
            } else {
                "taken as one boot of one host (--same-boot): times as they are".into()
            },
        });
    }
    if let Some((name, _)) = logs.iter().find(|(_, c)| c.is_none()) {
        return Err(format!(
            "{name} has no clock anchors (it was not written by `bthost record`: plain bpftrace?), \
             so it cannot be placed on one timeline with the other logs; if all the logs come \
             from one boot of one host, say so with --same-boot"
        ));
    }
    let clocks: Vec<&LogClock> = logs.iter().filter_map(|(_, c)| c.as_ref()).collect();
    let base = clocks[0];
    let mut shifts = Vec::new();
    let mut uncertainty = 0;
    let mut boots: Vec<&str> = Vec::new();
    for c in &clocks {
        if !boots.contains(&c.boot.as_str()) {
            boots.push(&c.boot);
        }
        // The first log of each boot gives that boot's offset: logs of one boot share one
        // clock exactly.
        let first_of_boot = clocks.iter().find(|o| o.boot == c.boot).expect("itself");
        if c.boot == base.boot {
            shifts.push(0);
            continue;
        }
        let shift = first_of_boot.offset - base.offset;
        shifts.push(i64::try_from(shift).map_err(|_| "clock anchors far apart".to_string())?);
        uncertainty = uncertainty.max(first_of_boot.uncertainty + base.uncertainty);
    }
    let how = if boots.len() == 1 {
        format!(
            "{} logs of one boot of {}: one clock, exact",
            clocks.len(),
            base.host
        )
    } else {
        format!(
            "{} logs of {} boots, placed by their hosts' CLOCK_REALTIME: within {} us of each \
             other as far as the anchors tell, plus the hosts' own clock agreement (NTP/PTP)",
            clocks.len(),
            boots.len(),
            uncertainty.div_ceil(1000)
        )
    };
    Ok(Alignment {
        shifts,
        uncertainty,
        how,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(at_end: bool, host: &str, boot: &str, mono: u64, real: u64, err: u64) -> Anchor {
        Anchor {
            at_end,
            host: host.into(),
            boot: boot.into(),
            mono,
            real,
            err,
        }
    }

    fn clock(anchors: &[Anchor]) -> Option<LogClock> {
        LogClock::from_anchors(anchors)
    }

    #[test]
    fn logs_of_other_boots_are_shifted_by_their_anchors() {
        // Host a booted 1000 s before host b: a's mono 2000 s and b's mono 1000 s paired with
        // realtimes 500 ns apart, so b's times are 1000 s + 500 ns later on a's clock; b's
        // realtime moved 3 us against its mono by its end (a slew).
        let s = 1_000_000_000u64;
        let a = clock(&[
            anchor(false, "a", "A", 2000 * s, 5000 * s, 100),
            anchor(true, "a", "A", 2010 * s, 5010 * s, 100),
        ]);
        let b = clock(&[
            anchor(false, "b", "B", 1000 * s, 5000 * s + 500, 200),
            anchor(true, "b", "B", 1010 * s, 5010 * s + 3500, 200),
        ]);
        let al = align(&[("a.log".into(), a), ("b.log".into(), b)], false).unwrap();
        assert_eq!(al.shifts, vec![0, (1000 * s + 500) as i64]);
        // Pairing errors (100 + 100, 200 + 200) and b's 3 us drift.
        assert_eq!(al.uncertainty, 3000 + 400 + 200);
        assert!(
            al.how.contains("2 boots") && al.how.contains("within 4 us"),
            "{}",
            al.how
        );
    }

    #[test]
    fn logs_of_one_boot_share_one_clock_exactly() {
        let a = clock(&[anchor(false, "n1", "B", 10, 1_000_010, 50)]);
        let b = clock(&[anchor(false, "n2", "B", 99, 1_000_199, 50)]);
        let al = align(&[("a".into(), a), ("b".into(), b)], false).unwrap();
        assert_eq!((al.shifts, al.uncertainty), (vec![0, 0], 0));
        assert!(al.how.contains("one clock, exact"), "{}", al.how);
    }

    #[test]
    fn a_log_without_anchors_is_refused_unless_one_boot_is_said() {
        let a = clock(&[anchor(false, "n1", "B", 10, 1_000_010, 50)]);
        let logs = [("a.log".to_string(), a), ("plain.log".to_string(), None)];
        let e = align(&logs, false).unwrap_err();
        assert!(
            e.starts_with("plain.log has no clock anchors") && e.contains("--same-boot"),
            "{e}"
        );
        assert_eq!(align(&logs, true).unwrap().shifts, vec![0, 0]);
        // One log needs no anchors.
        assert_eq!(align(&logs[1..], false).unwrap().shifts, vec![0]);
    }
}
