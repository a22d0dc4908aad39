//! The schema: what each record id of a log means. It is the contract between the script and
//! the parser, printed by the script at BEGIN (so a log describes itself), written beside the
//! script, and identified by a hash that `convert` checks.
//!
//! Text form, one line each:
//! ```text
//! #bthost 2 <hash> bpftrace=0.17.0 hip@0.1.0 rccl@0.1.0
//! #S <id> <pack> <function> <phase> <name>:<type>[:enum=<E>][:link=<K>] ...
//! ```
//! Record lines are `<id> <tid> <ts> [<dur>] <field>...`, all in lower-case hex without `0x`
//! (`dur` only for `call` records); thread lines are `T <pid> <tid> <comm>`.
//!
//! Format 2 (this one): `ts` is the time the record was written, a call's exit (its start is
//! `ts - dur`); a line `+<id> <delta> [<dur>] <field>...` continues the line before it (same
//! tid, `ts` = that line's `ts` + `delta`; see crate::compose::emit::pairing). Format 1 (read,
//! no longer written): `ts` is a call's start, and there are no continuation lines.
//!
//! Format 3: the records are stored in BPF maps and printed as bpftrace prints map entries
//! (crate::compose::emit::{drained, ring}); the header says how (`emit=maps`,
//! `emit=ring:<N>`). Each record is numbered per thread, so that a lost one is found.

use std::fmt::Write as _;

use bthost_plugin_api::Phase;
use semver::Version;

use crate::hash::fnv1a64;
use crate::pack::types::FieldType;

/// The newest log format (the header's second word): scripts write 2 (printed records) or
/// 3 (records stored in maps), see [`Schema::format`].
pub const FORMAT: u32 = 3;

/// The oldest log format this bthost still reads.
pub const OLDEST_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub ty: FieldType,
    pub enum_name: Option<String>,
    pub link: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSpec {
    pub id: u32,
    pub pack: String,
    pub function: String,
    pub phase: Phase,
    pub fields: Vec<FieldSpec>,
}

impl RecordSpec {
    /// Number of raw numbers after the fixed prefix (`tid ts [dur]`).
    pub fn raw_width(&self) -> usize {
        self.fields.iter().map(|f| f.ty.slots()).sum()
    }
}

/// How a log's records left the kernel (crate::compose::emit::Emit), as its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Storage {
    /// Printed as written (formats 1 and 2).
    #[default]
    Printed,
    /// Stored in maps and drained (`emit=maps`).
    Maps,
    /// The last `per_thread` records of each thread, dumped on demand (`emit=ring:N`).
    Ring { per_thread: u32 },
}

impl Storage {
    fn word(self) -> Option<String> {
        match self {
            Storage::Printed => None,
            Storage::Maps => Some("emit=maps".into()),
            Storage::Ring { per_thread } => Some(format!("emit=ring:{per_thread}")),
        }
    }

    fn parse(v: &str) -> Option<Storage> {
        match v {
            "maps" => Some(Storage::Maps),
            _ => {
                let n: u32 = v.strip_prefix("ring:")?.parse().ok()?;
                (n > 0).then_some(Storage::Ring { per_thread: n })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub bpftrace: Version,
    pub storage: Storage,
    /// (pack, version), sorted by name.
    pub packs: Vec<(String, Version)>,
    /// Records, `records[i].id == i + 1`.
    pub records: Vec<RecordSpec>,
}

pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Entry => "entry",
        Phase::Exit => "exit",
        Phase::Call => "call",
    }
}

fn parse_phase(s: &str) -> Option<Phase> {
    Some(match s {
        "entry" => Phase::Entry,
        "exit" => Phase::Exit,
        "call" => Phase::Call,
        _ => return None,
    })
}

impl Schema {
    pub fn record(&self, id: u32) -> Option<&RecordSpec> {
        id.checked_sub(1).and_then(|i| self.records.get(i as usize))
    }

    /// The `#S` lines, without the header.
    pub fn record_lines(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| {
                let mut s = format!(
                    "#S {:x} {} {} {}",
                    r.id,
                    r.pack,
                    r.function,
                    phase_name(r.phase)
                );
                for f in &r.fields {
                    let _ = write!(s, " {}:{}", f.name, f.ty);
                    if let Some(e) = &f.enum_name {
                        let _ = write!(s, ":enum={e}");
                    }
                    if let Some(k) = &f.link {
                        let _ = write!(s, ":link={k}");
                    }
                }
                s
            })
            .collect()
    }

    /// The log format a script of this schema writes.
    pub fn format(&self) -> u32 {
        match self.storage {
            Storage::Printed => 2,
            Storage::Maps | Storage::Ring { .. } => 3,
        }
    }

    fn header_body(&self) -> String {
        let mut s = format!("bpftrace={}", self.bpftrace);
        if let Some(w) = self.storage.word() {
            let _ = write!(s, " {w}");
        }
        for (n, v) in &self.packs {
            let _ = write!(s, " {n}@{v}");
        }
        s
    }

    /// The schema's identity: a hash of everything the header and `#S` lines say.
    pub fn hash(&self) -> u64 {
        let mut text = self.header_body();
        for l in self.record_lines() {
            text.push('\n');
            text.push_str(&l);
        }
        fnv1a64(text.as_bytes())
    }

    pub fn header_line(&self) -> String {
        format!(
            "#bthost {} {:016x} {}",
            self.format(),
            self.hash(),
            self.header_body()
        )
    }

    /// The header and all `#S` lines, as the script prints them and `build` writes them.
    pub fn to_text(&self) -> String {
        let mut s = self.header_line();
        s.push('\n');
        for l in self.record_lines() {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }
}

/// Parsing of the header, kept apart so the log reader can feed it line by line.
#[derive(Debug, Default)]
pub struct SchemaBuilder {
    /// The header's log format (OLDEST_FORMAT..=FORMAT).
    pub format: u32,
    pub claimed_hash: u64,
    pub bpftrace: Option<Version>,
    pub storage: Storage,
    pub packs: Vec<(String, Version)>,
    pub records: Vec<RecordSpec>,
}

/// The packs a log was written with, from its `#bthost` header (read from the first 256
/// lines: bpftrace may print a few before it); None if it has none there.
pub fn log_packs(log: &std::path::Path) -> Option<Vec<String>> {
    use std::io::BufRead;
    let f = std::fs::File::open(log).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .take(256)
        .map_while(Result::ok)
        .find(|l| l.starts_with("#bthost "))
        .and_then(|l| SchemaBuilder::header(&l).ok())
        .map(|b| b.packs.into_iter().map(|(n, _)| n).collect())
}

impl SchemaBuilder {
    /// Parses a `#bthost ...` line.
    pub fn header(line: &str) -> Result<SchemaBuilder, String> {
        let mut w = line.split_ascii_whitespace();
        if w.next() != Some("#bthost") {
            return Err(
                "expected `#bthost <format> <hash> bpftrace=<version> <pack>@<version>...`".into(),
            );
        }
        let format: u32 = w
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or("the header has no format number")?;
        if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
            return Err(format!(
                "log format {format}, but this bthost reads formats {OLDEST_FORMAT} to {FORMAT}: convert it with the bthost that built its script"
            ));
        }
        let claimed_hash = w
            .next()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or("the header has no schema hash")?;
        let mut b = SchemaBuilder {
            format,
            claimed_hash,
            ..Default::default()
        };
        for word in w {
            if let Some(v) = word.strip_prefix("bpftrace=") {
                b.bpftrace =
                    Some(Version::parse(v).map_err(|e| format!("bpftrace version {v:?}: {e}"))?);
            } else if let Some(v) = word.strip_prefix("emit=") {
                b.storage = Storage::parse(v)
                    .ok_or_else(|| format!("unknown record storage {v:?} in the header"))?;
                if format < 3 {
                    return Err(format!("`emit={v}` in a log of format {format}"));
                }
            } else if let Some((n, v)) = word.split_once('@') {
                let v = Version::parse(v).map_err(|e| format!("pack {n} version {v:?}: {e}"))?;
                b.packs.push((n.to_string(), v));
            } else {
                return Err(format!("unexpected word {word:?} in the header"));
            }
        }
        Ok(b)
    }

    /// Parses a `#S ...` line.
    pub fn record_line(&mut self, line: &str) -> Result<(), String> {
        let mut w = line.split_ascii_whitespace().skip(1);
        let mut next = |what: &str| w.next().ok_or_else(|| format!("schema line has no {what}"));
        let id = u32::from_str_radix(next("id")?, 16)
            .map_err(|_| "schema line id is not hex".to_string())?;
        if id as usize != self.records.len() + 1 {
            return Err(format!(
                "schema record id {id:x} out of order (expected {:x})",
                self.records.len() + 1
            ));
        }
        let pack = next("pack")?.to_string();
        let function = next("function")?.to_string();
        let phase_s = next("phase")?;
        let phase = parse_phase(phase_s).ok_or_else(|| format!("unknown phase {phase_s:?}"))?;
        let mut fields = Vec::new();
        for f in w {
            let mut parts = f.split(':');
            let name = parts.next().unwrap_or_default().to_string();
            let ty: FieldType = parts
                .next()
                .ok_or_else(|| format!("field {f:?} has no type"))?
                .parse()?;
            let mut spec = FieldSpec {
                name,
                ty,
                enum_name: None,
                link: None,
            };
            for extra in parts {
                match extra.split_once('=') {
                    Some(("enum", e)) => spec.enum_name = Some(e.to_string()),
                    Some(("link", k)) => spec.link = Some(k.to_string()),
                    _ => return Err(format!("field {f:?}: unknown attribute {extra:?}")),
                }
            }
            fields.push(spec);
        }
        self.records.push(RecordSpec {
            id,
            pack,
            function,
            phase,
            fields,
        });
        Ok(())
    }

    /// Finishes the schema and checks its hash against the header's claim.
    pub fn finish(self) -> Result<Schema, String> {
        let schema = Schema {
            bpftrace: self
                .bpftrace
                .ok_or("the header names no bpftrace version")?,
            storage: self.storage,
            packs: self.packs,
            records: self.records,
        };
        let h = schema.hash();
        if h != self.claimed_hash {
            return Err(format!(
                "the header claims schema {:016x} but its #S lines hash to {h:016x}: the header is damaged or was edited",
                self.claimed_hash
            ));
        }
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schema {
        Schema {
            bpftrace: Version::new(0, 17, 0),
            storage: Storage::Printed,
            packs: vec![("hip".into(), Version::new(0, 1, 0))],
            records: vec![RecordSpec {
                id: 1,
                pack: "hip".into(),
                function: "hipStreamSynchronize".into(),
                phase: Phase::Entry,
                fields: vec![FieldSpec {
                    name: "stream".into(),
                    ty: FieldType::Ptr,
                    enum_name: None,
                    link: Some("stream".into()),
                }],
            }],
        }
    }

    #[test]
    fn text_round_trips_and_hash_is_checked() {
        let mut ring = sample();
        ring.storage = Storage::Ring { per_thread: 8 };
        assert!(
            ring.header_line().starts_with("#bthost 3 "),
            "{}",
            ring.header_line()
        );
        assert_ne!(ring.hash(), sample().hash());
        let s = sample();
        let text = s.to_text();
        let mut lines = text.lines();
        let mut b = SchemaBuilder::header(lines.next().unwrap()).unwrap();
        for l in lines {
            b.record_line(l).unwrap();
        }
        assert_eq!(b.finish().unwrap(), s);

        let edited = text.replace("stream:ptr", "stream:u64");
        let mut lines = edited.lines();
        let mut b = SchemaBuilder::header(lines.next().unwrap()).unwrap();
        for l in lines {
            b.record_line(l).unwrap();
        }
        assert!(b.finish().unwrap_err().contains("damaged"));
    }

    #[test]
    fn reads_formats_1_to_3_and_refuses_others() {
        for f in [0, 4] {
            let e = SchemaBuilder::header(&format!("#bthost {f} 00 bpftrace=0.17.0")).unwrap_err();
            assert!(e.contains(&format!("format {f},")), "{e}");
        }
        for f in [1, 2, 3] {
            let b = SchemaBuilder::header(&format!("#bthost {f} 00 bpftrace=0.17.0")).unwrap();
            assert_eq!(b.format, f);
        }
        let b = SchemaBuilder::header("#bthost 3 00 bpftrace=0.17.0 emit=ring:64").unwrap();
        assert_eq!(b.storage, Storage::Ring { per_thread: 64 });
        for bad in [
            "#bthost 2 00 emit=maps",
            "#bthost 3 00 emit=ring:0",
            "#bthost 3 00 emit=x",
        ] {
            assert!(SchemaBuilder::header(bad).is_err(), "{bad}");
        }
        assert!(SchemaBuilder::header("hello").is_err());
    }
}
