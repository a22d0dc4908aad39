//! One line of a log, classified. bpftrace's own lines are recognised and kept, never dropped.

/// At most this many numbers in a record line (longer ones are garbage).
pub const MAX_NUMS: usize = 40;

#[derive(Debug, PartialEq, Eq)]
pub enum LineKind<'a> {
    Blank,
    /// `#bthost ...`
    Header(&'a str),
    /// `#S ...`
    SchemaRecord(&'a str),
    /// `T <pid> <tid> <comm>`
    Thread {
        pid: u32,
        tid: u32,
        comm: &'a str,
    },
    /// `<id> <n>...`: a record; its numbers (`rest`) are parsed by [`record_numbers`] into the
    /// caller's buffer, so the hot path allocates nothing per line.
    Record {
        id: u32,
        rest: &'a str,
    },
    /// `+<id> <delta> <n>...` (log format 2): a record continuing the line before it, in the
    /// same printf (crate::compose::pairing). Its tid is that line's, its time that line's
    /// plus `delta`; `rest` starts at `delta`.
    Continuation {
        id: u32,
        rest: &'a str,
    },
    /// bpftrace said `Attaching N probes...`.
    Attaching(u64),
    /// A traced process exited (`#P <pid> <time> <exit_code>`, from record's hooks; the
    /// kernel's exit code: status << 8 | signal).
    ProcessExit {
        pid: u32,
        time: u64,
        code: u64,
    },
    /// The script's END began (format 2: `#E <time> in-flight calls`; format 1 had no time):
    /// the in-flight dump follows.
    End(Option<u64>),
    /// bpftrace lost events: `Lost N events`.
    Lost(u64),
    /// bpftrace's error or warning lines (`ERROR: ...`, `WARNING: ...`, failed detaches, ...).
    BpftraceMessage(&'a str),
    /// An in-flight call's entry, from the script's END dump of its pending map:
    /// `@e<id>[<tid>]: <ts>` or `@e<id>[<tid>]: (<ts>, <value>, ...)`, in decimal.
    Pending {
        id: u32,
        tid: u32,
        nums: Vec<u64>,
    },
    /// A thread's record still waiting for its pair when the trace stopped, from the END
    /// dump of the held map (crate::compose::pairing): `@b[<tid>]: (<id << 8 | n>, <values>...)`,
    /// in decimal, padded with zeros. `nums` is the record's numbers (`tid`, then the `n` values).
    Held {
        id: u32,
        nums: Vec<u64>,
    },
    /// A record stored in a map (log format 3, crate::compose::emit): from a drain,
    /// `@r<phase>w<width>[<tid>, <seq>]: (<id>, <values>...)`, or from the flight recorder's
    /// ring, `@f[<tid>, <slot>]: (<seq>, <id << 8 | n>, <values>..., 0...)`. `nums` is the
    /// record's numbers (`tid`, then its values), as a printed record's.
    Stored {
        seq: u64,
        id: u32,
        nums: Vec<u64>,
    },
    /// A thread's record count (`@q[<tid>]: <n>`, format 3): its last record's number.
    RecordCount {
        tid: u32,
        n: u64,
    },
    /// A drain's mark (`#D <time>`, format 3): every record written before `time` is above.
    Drained(u64),
    /// Tracing stopped early, before the last dump (`#Q <time> <why>`, from `record`: bpftrace
    /// exited or was killed, e.g. by the OOM killer): the records above are all there is.
    StoppedEarly {
        time: u64,
        why: &'a str,
    },
    /// Tracing stopped and started again (`#G <from> <to> <why>`, from `record --restart`:
    /// bpftrace ended and record ran it again): nothing was traced between `from` and `to`,
    /// and each thread's record numbers start again after it.
    Gap {
        from: u64,
        to: u64,
        why: &'a str,
    },
    /// A clock anchor that `record` writes (`#C start|end host=... boot=... mono=... real=...`,
    /// crate::log::anchor).
    Anchor(&'a str),
    /// Another map that bpftrace printed (`@name[...]: value`).
    MapDump(&'a str),
    /// Anything else, with the reason it is not a record.
    Garbage(String),
}

/// Classifies one line (without its newline).
pub fn classify(line: &str) -> LineKind<'_> {
    let t = line.trim_end_matches('\r');
    // Records are nearly every line: recognise them first. Nothing else that bpftrace or the
    // script prints starts with a hex word and a space.
    if t.as_bytes().first().is_some_and(u8::is_ascii_hexdigit) {
        if let rec @ LineKind::Record { .. } = record(t) {
            return rec;
        }
    }
    if let Some(c) = t.strip_prefix('+') {
        return match record(c) {
            LineKind::Record { id, rest } => LineKind::Continuation { id, rest },
            _ => LineKind::Garbage(format!("not a continuation record: {:?}", short(t))),
        };
    }
    if t.trim().is_empty() {
        return LineKind::Blank;
    }
    if t.starts_with("#bthost ") {
        return LineKind::Header(t);
    }
    if t.starts_with("#S ") {
        return LineKind::SchemaRecord(t);
    }
    if let Some(rest) = t.strip_prefix("T ") {
        return thread(rest)
            .unwrap_or_else(|| LineKind::Garbage(format!("bad thread line {:?}", short(t))));
    }
    if let Some(n) = t
        .strip_prefix("Attaching ")
        .and_then(|r| r.split(' ').next())
    {
        if let Ok(n) = n.parse() {
            return LineKind::Attaching(n);
        }
    }
    if let Some(rest) = t.strip_prefix("Lost ") {
        if let Some(n) = rest
            .strip_suffix(" events")
            .and_then(|n| n.trim().parse().ok())
        {
            return LineKind::Lost(n);
        }
    }
    if t.starts_with("ERROR")
        || t.starts_with("WARNING")
        || t.starts_with("open(")
        || t.starts_with("stdin:")
        || t.starts_with("Additional Info")
        || t.starts_with(' ')
        || is_located_message(t)
    {
        return LineKind::BpftraceMessage(t);
    }
    if let Some(rest) = t.strip_prefix("#E") {
        // The END marker before the in-flight dump.
        let time = rest.split_ascii_whitespace().next();
        return LineKind::End(time.and_then(|w| u64::from_str_radix(w, 16).ok()));
    }
    if t.starts_with("#C ") {
        return LineKind::Anchor(t);
    }
    if let Some(rest) = t.strip_prefix("#Q ") {
        let (time, why) = rest.split_once(' ').unwrap_or((rest, ""));
        if let Ok(time) = u64::from_str_radix(time, 16) {
            return LineKind::StoppedEarly {
                time,
                why: why.trim(),
            };
        }
        return LineKind::Garbage(format!("bad early-stop line {:?}", short(t)));
    }
    if let Some(rest) = t.strip_prefix("#G ") {
        let mut w = rest.splitn(3, ' ');
        let hex = |x: Option<&str>| x.and_then(|x| u64::from_str_radix(x, 16).ok());
        if let (Some(from), Some(to), why) = (hex(w.next()), hex(w.next()), w.next()) {
            return LineKind::Gap {
                from,
                to,
                why: why.unwrap_or("").trim(),
            };
        }
        return LineKind::Garbage(format!("bad gap line {:?}", short(t)));
    }
    if let Some(rest) = t.strip_prefix("#D ") {
        if let Ok(time) = u64::from_str_radix(rest.trim(), 16) {
            return LineKind::Drained(time);
        }
    }
    if let Some(rest) = t.strip_prefix("#P ") {
        let w: Vec<Option<u64>> = rest
            .split_ascii_whitespace()
            .map(|x| u64::from_str_radix(x, 16).ok())
            .collect();
        if let [Some(pid), Some(time), Some(code)] = w[..] {
            if let Ok(pid) = u32::try_from(pid) {
                return LineKind::ProcessExit { pid, time, code };
            }
        }
        return LineKind::Garbage(format!("bad process exit line {:?}", short(t)));
    }
    // `bthost record`'s own lines: attached (#A), barriers (#B), dump ends (#Z), processes
    // held (#X) or loading a library (#M), status spans (#H, #h).
    if let [b'#', c, ..] = t.as_bytes() {
        if b"ABZXMHh".contains(c) {
            return LineKind::Blank;
        }
    }
    if let Some(rest) = t.strip_prefix("@e") {
        if let Some(p) = pending(rest) {
            return p;
        }
    }
    if let Some(rest) = t.strip_prefix("@b") {
        if let Some(h) = held(rest) {
            return h;
        }
    }
    if let Some(k) = stored(t) {
        return k;
    }
    if t.starts_with('@') {
        return LineKind::MapDump(t);
    }
    record(t)
}

/// bpftrace's runtime warnings name the script place: `script.bt:12:2-17: WARNING: ...`.
fn is_located_message(t: &str) -> bool {
    let Some((place, rest)) = t.split_once(": ") else {
        return false;
    };
    (rest.starts_with("WARNING") || rest.starts_with("ERROR")) && place.contains(".bt:")
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

fn thread(rest: &str) -> Option<LineKind<'_>> {
    let mut it = rest.splitn(3, ' ');
    let pid = u32::from_str_radix(it.next()?, 16).ok()?;
    let tid = u32::from_str_radix(it.next()?, 16).ok()?;
    let comm = it.next().unwrap_or("");
    Some(LineKind::Thread { pid, tid, comm })
}

/// Parses `[<tid>]: (<id << 8 | n>, <v1>, ..., <padding>...)` into the record it holds.
fn held(rest: &str) -> Option<LineKind<'static>> {
    let (_, mut nums) = per_thread_entry(rest.strip_prefix('[')?)?;
    // nums: tid, id << 8 | n, values (n of them, then zeros up to the widest record).
    let head = *nums.get(1)?;
    let n = (head & 0xff) as usize;
    let id = u32::try_from(head >> 8).ok().filter(|&id| id != 0)?;
    if nums.len() < 2 + n {
        return None;
    }
    // The record's numbers: the tid, then its values.
    nums.truncate(2 + n);
    nums.remove(1);
    Some(LineKind::Held { id, nums })
}

/// The format-3 map lines: stored records, entries of calls in flight, record counts.
fn stored(t: &str) -> Option<LineKind<'static>> {
    let (name, rest) = t.strip_prefix('@')?.split_once('[')?;
    let (key, value) = rest.split_once("]: ")?;
    let mut k = key.split(", ").map(|n| n.trim().parse::<u64>().ok());
    let tid = u32::try_from(k.next()??).ok()?;
    let second = k.next().flatten();
    if k.next().is_some() {
        return None;
    }
    let values = map_values(value)?;
    let bytes = name.as_bytes();
    match (bytes.first()?, second) {
        // @r<phase>w<width>: (id, values...)
        (b'r', Some(seq))
            if name[1..].split_once('w').is_some_and(|(p, w)| {
                p.bytes().all(|b| b.is_ascii_digit()) && w.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            let (&id, vals) = values.split_first()?;
            let mut nums = vec![u64::from(tid)];
            nums.extend_from_slice(vals);
            Some(LineKind::Stored {
                seq,
                id: u32::try_from(id).ok().filter(|&i| i != 0)?,
                nums,
            })
        }
        // @f: (seq, id << 8 | n, values..., padding)
        (b'f', Some(_slot)) if name.len() == 1 => {
            let (&seq, rest) = values.split_first()?;
            let (&head, vals) = rest.split_first()?;
            let n = (head & 0xff) as usize;
            let id = u32::try_from(head >> 8).ok().filter(|&i| i != 0)?;
            let mut nums = vec![u64::from(tid)];
            nums.extend_from_slice(vals.get(..n)?);
            Some(LineKind::Stored { seq, id, nums })
        }
        // @p<n>[tid, id]: a call in flight, as the printf strategy's @e<id>[tid].
        (b'p', Some(id)) if name[1..].bytes().all(|b| b.is_ascii_digit()) => {
            let mut nums = vec![u64::from(tid)];
            nums.extend(values);
            Some(LineKind::Pending {
                id: u32::try_from(id).ok()?,
                tid,
                nums,
            })
        }
        (b'q', None) if name.len() == 1 => Some(LineKind::RecordCount {
            tid,
            n: *values.first()?,
        }),
        _ => None,
    }
}

/// A map value as bpftrace prints it: `<n>` or `(<n>, <n>, ...)`, decimal, maybe negative.
fn map_values(value: &str) -> Option<Vec<u64>> {
    let value = value.trim();
    let inner = value
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or(value);
    let mut nums = Vec::new();
    for v in inner.split(',') {
        let v = v.trim();
        let n = match v.strip_prefix('-') {
            Some(neg) => neg.parse::<u64>().ok()?.wrapping_neg(),
            None => v.parse::<u64>().ok()?,
        };
        nums.push(n);
        if nums.len() > MAX_NUMS {
            return None;
        }
    }
    Some(nums)
}

/// Parses `<id hex>[<tid>]: <ts>` or `<id hex>[<tid>]: (<ts>, <v>, ...)` (decimal values,
/// possibly negative, as bpftrace prints map values).
fn pending(rest: &str) -> Option<LineKind<'static>> {
    let (id, rest) = rest.split_once('[')?;
    let id = u32::from_str_radix(id, 16).ok()?;
    let (tid, nums) = per_thread_entry(rest)?;
    Some(LineKind::Pending { id, tid, nums })
}

/// Parses what follows the `[` of a per-thread map entry, `<tid>]: <v>` or
/// `<tid>]: (<v>, ...)`, into the tid and the numbers `tid, v, ...`.
fn per_thread_entry(rest: &str) -> Option<(u32, Vec<u64>)> {
    let (tid, value) = rest.split_once("]: ")?;
    let tid: u32 = tid.parse().ok()?;
    let mut nums = vec![u64::from(tid)];
    nums.extend(map_values(value)?);
    (nums.len() <= MAX_NUMS).then_some((tid, nums))
}

fn record(t: &str) -> LineKind<'_> {
    let (first, rest) = t.split_once(' ').unwrap_or((t, ""));
    match parse_hex(first.as_bytes()) {
        Some(id) if id <= u64::from(u32::MAX) => LineKind::Record {
            id: id as u32,
            rest,
        },
        _ => LineKind::Garbage(format!("not a record: {:?}", short(t))),
    }
}

/// Parses a record's numbers (space-separated lower- or upper-case hex, as `%lx` prints them)
/// into `nums`, which is cleared first. The error says what is wrong with the line.
pub fn record_numbers(rest: &str, nums: &mut Vec<u64>) -> Result<(), String> {
    nums.clear();
    if rest.is_empty() {
        return Ok(());
    }
    // One pass over the bytes: this is the converter's innermost loop. Each byte's meaning
    // comes from a table (one load, one well-predicted branch for a digit) rather than a
    // cascade of range tests.
    let b = rest.as_bytes();
    let (mut n, mut digits) = (0u64, 0usize);
    for (i, &c) in b.iter().enumerate() {
        let d = match HEX_DIGIT[c as usize] {
            d if d < 16 => d,
            SPACE => {
                if digits == 0 {
                    return Err("empty record field (two spaces)".into());
                }
                if nums.len() == MAX_NUMS {
                    return Err("record has too many fields".into());
                }
                nums.push(n);
                (n, digits) = (0, 0);
                continue;
            }
            _ => {
                let word = rest[..i].rsplit(' ').next().unwrap_or("").len();
                let from = i - word;
                let w = rest[from..].split(' ').next().unwrap_or("");
                return Err(format!("record field {:?} is not hex", short(w)));
            }
        };
        digits += 1;
        if digits > 16 {
            return Err("record field has more than 16 hex digits".into());
        }
        n = (n << 4) | u64::from(d);
    }
    if digits == 0 {
        return Err("empty record field (a trailing space)".into());
    }
    if nums.len() == MAX_NUMS {
        return Err("record has too many fields".into());
    }
    nums.push(n);
    Ok(())
}

/// In [`HEX_DIGIT`]: a field separator, and a byte that is neither digit nor separator.
const SPACE: u8 = 0xfe;
const NOT_HEX: u8 = 0xff;

/// Each byte's hex digit value (either case), or [`SPACE`], or [`NOT_HEX`].
static HEX_DIGIT: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t[b' ' as usize] = SPACE;
    t
};

/// A non-empty run of at most 16 hex digits (no sign, no prefix).
fn parse_hex(w: &[u8]) -> Option<u64> {
    if w.is_empty() || w.len() > 16 {
        return None;
    }
    let mut n = 0u64;
    for &b in w {
        let d = HEX_DIGIT[b as usize];
        if d >= 16 {
            return None;
        }
        n = (n << 4) | u64::from(d);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_kind() {
        assert_eq!(classify(""), LineKind::Blank);
        assert_eq!(classify("Attaching 5 probes..."), LineKind::Attaching(5));
        assert_eq!(classify("Lost 12 events"), LineKind::Lost(12));
        assert_eq!(
            classify("T 72c 72d my worker"),
            LineKind::Thread {
                pid: 0x72c,
                tid: 0x72d,
                comm: "my worker"
            }
        );
        assert_eq!(
            classify("3 72c cc9e754c 1 fffffffb"),
            LineKind::Record {
                id: 3,
                rest: "72c cc9e754c 1 fffffffb"
            }
        );
        let mut nums = Vec::new();
        record_numbers("72c cc9e754c 1 fffffffb", &mut nums).unwrap();
        assert_eq!(nums, vec![0x72c, 0xcc9e754c, 1, 0xfffffffb]);
        // Every digit of either case, the widest field, and the bytes next to the digits'
        // ranges in the table ('/', ':', '@', 'G', '`', 'g'), a tab and a non-ASCII byte.
        record_numbers("0123456789 abcdef ABCDEF ffffffffffffffff", &mut nums).unwrap();
        assert_eq!(nums, vec![0x123456789, 0xabcdef, 0xabcdef, u64::MAX]);
        for bad in [
            "72c zz",
            "72c +5",
            " 5",
            "1 11111111111111111",
            "5 ",
            "1  2",
            "1/",
            "1:",
            "@",
            "G",
            "`",
            "g",
            "1\t2",
            "1é",
        ] {
            assert!(record_numbers(bad, &mut nums).is_err(), "{bad}");
        }
        let err = record_numbers("1 2g3 4", &mut nums).unwrap_err();
        assert!(err.contains("\"2g3\" is not hex"), "{err}");
        assert!(matches!(
            classify("ERROR: failed to detach probe: x"),
            LineKind::BpftraceMessage(_)
        ));
        for l in [
            "bpft.bt:1339:2-17: WARNING: Can't delete map element because it does not exist.",
            "Additional Info - helper: map_delete_elem, retcode: -2",
            "    delete(@n0[$t]);",
        ] {
            assert!(matches!(classify(l), LineKind::BpftraceMessage(_)), "{l}");
        }
        assert!(matches!(classify("@thr[1836]: 1"), LineKind::MapDump(_)));
        assert_eq!(
            classify("@e1f[26656]: (2713074388058, 93968880276992, -1)"),
            LineKind::Pending {
                id: 0x1f,
                tid: 26656,
                nums: vec![26656, 2713074388058, 93968880276992, u64::MAX]
            }
        );
        assert_eq!(
            classify("@e2[7]: 99"),
            LineKind::Pending {
                id: 2,
                tid: 7,
                nums: vec![7, 99]
            }
        );
        assert!(matches!(classify("@e2[7]: (1, x)"), LineKind::MapDump(_)));
    }

    #[test]
    fn held_records() {
        // id 0x27, 3 values (0x2703), padded to 5.
        match classify("@b[26656]: (9987, 2713074388058, 1200, 93968880276992, 0, 0)") {
            LineKind::Held { id, nums } => {
                assert_eq!(id, 0x27);
                assert_eq!(nums, vec![26656, 2713074388058, 1200, 93968880276992]);
            }
            other => panic!("{other:?}"),
        }
        // A negative value (a return code) as bpftrace prints it.
        match classify("@b[7]: (1282, 100, -1)") {
            LineKind::Held { nums, .. } => assert_eq!(nums, vec![7, 100, u64::MAX]),
            other => panic!("{other:?}"),
        }
        // Width past the tuple (0x504), id 0 (0x1), not numbers: not a held record.
        for bad in [
            "@b[7]: (1284, 1, 2)",
            "@b[7]: (1, 1)",
            "@b[7]: (1281, x)",
            "@bx[7]: 1",
        ] {
            assert!(matches!(classify(bad), LineKind::MapDump(_)), "{bad}");
        }
        assert_eq!(classify("#E in-flight calls"), LineKind::End(None));
        assert_eq!(
            classify("#E 178ba2c3d4e5 in-flight calls"),
            LineKind::End(Some(0x178b_a2c3_d4e5))
        );
        assert!(matches!(classify("3 72c cc9e7"), LineKind::Record { .. }));
        assert!(matches!(classify("hello world"), LineKind::Garbage(_)));
    }

    #[test]
    fn stored_records_and_counts() {
        assert_eq!(
            classify("@r0w4[17149, 12]: (6, 1179002245368, 38998, 94803546206880, 0)"),
            LineKind::Stored {
                seq: 12,
                id: 6,
                nums: vec![17149, 1179002245368, 38998, 94803546206880, 0]
            }
        );
        // The ring: seq, id << 8 | n (0x604: id 6, 4 values), the values, padding.
        assert_eq!(
            classify("@f[17149, 0]: (4, 1540, 1179002304775, 15964, 94803546206880, 0, 0)"),
            LineKind::Stored {
                seq: 4,
                id: 6,
                nums: vec![17149, 1179002304775, 15964, 94803546206880, 0]
            }
        );
        assert_eq!(
            classify("@p1[17149, 5]: (1179002245368, -1)"),
            LineKind::Pending {
                id: 5,
                tid: 17149,
                nums: vec![17149, 1179002245368, u64::MAX]
            }
        );
        assert_eq!(
            classify("@p0[7, 3]: 99"),
            LineKind::Pending {
                id: 3,
                tid: 7,
                nums: vec![7, 99]
            }
        );
        assert_eq!(
            classify("@q[17149]: 6"),
            LineKind::RecordCount { tid: 17149, n: 6 }
        );
        assert_eq!(classify("#D 1128fbc21bb"), LineKind::Drained(0x1128fbc21bb));
        assert_eq!(
            classify("#Q 4bef09d9cb8 bpftrace was killed by SIGKILL: the OOM killer?"),
            LineKind::StoppedEarly {
                time: 0x4bef09d9cb8,
                why: "bpftrace was killed by SIGKILL: the OOM killer?"
            }
        );
        assert!(matches!(classify("#Q nope"), LineKind::Garbage(_)));
        assert_eq!(
            classify("#G 4bef09d9cb8 4bf0a1b2c3d bpftrace was killed by SIGKILL"),
            LineKind::Gap {
                from: 0x4bef09d9cb8,
                to: 0x4bf0a1b2c3d,
                why: "bpftrace was killed by SIGKILL"
            }
        );
        assert!(matches!(classify("#G 12 nope"), LineKind::Garbage(_)));
        for control in ["#Z ffffffff", "#B 1 0", "#X 5036", "#A all probes attached"] {
            assert_eq!(classify(control), LineKind::Blank, "{control}");
        }
        // Damaged: a width past the values, id 0, a key of three numbers, not numbers.
        for bad in [
            "@f[1, 0]: (4, 1544, 1, 2)",
            "@r0w2[1, 2]: (0, 5, 6)",
            "@r0w2[1, 2, 3]: (1, 5, 6)",
            "@r0w2[1, 2]: (1, x)",
            "@rx[1, 2]: (1, 2)",
            "@q: 5",
        ] {
            assert!(matches!(classify(bad), LineKind::MapDump(_)), "{bad}");
        }
    }

    #[test]
    fn continuation_lines() {
        assert_eq!(
            classify("+27 3a98 2f3a 5eed 0"),
            LineKind::Continuation {
                id: 0x27,
                rest: "3a98 2f3a 5eed 0"
            }
        );
        for bad in ["+zz 5", "+ 5", "+", "++3 5"] {
            assert!(matches!(classify(bad), LineKind::Garbage(_)), "{bad}");
        }
    }
}
