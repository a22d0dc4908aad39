//! A finished call (or instant) in a compact binary form, as the converter sorts and spills it:
//! a fixed header (the sort key first) and varint-coded arguments, results and links whose
//! names and strings are ids into one [`Strings`] table. About 60 bytes per call instead of the
//! ~900 bytes that a `Vec`-of-`Arg` call costs in memory.

use bthost_plugin_api::Value;
use rustc_hash::FxHashMap;

use super::varint::put as varint;

/// Interned strings: names (of calls, arguments, link keys, enum values) and string values.
#[derive(Default)]
pub struct Strings {
    ids: FxHashMap<Box<str>, u32>,
    all: Vec<Box<str>>,
}

impl Strings {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.all.len() as u32;
        self.all.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        &self.all[id as usize]
    }
}

/// A value as stored: like [`Value`], with strings as ids.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum V {
    Int(i64),
    UInt(u64),
    Hex(u64),
    Enum { raw: i64, name: u32 },
    Code(u64),
    Str(u32),
    Bool(bool),
    Float(f64),
}

impl V {
    /// The value as an integer, if it is one (enums by their number, bools as 0/1).
    pub fn as_i64(self) -> Option<i64> {
        match self {
            V::Int(i) => Some(i),
            V::UInt(u) | V::Hex(u) | V::Code(u) => Some(u as i64),
            V::Enum { raw, .. } => Some(raw),
            V::Bool(b) => Some(i64::from(b)),
            V::Str(_) | V::Float(_) => None,
        }
    }

    pub fn from_value(v: &Value, strings: &mut Strings) -> V {
        match v {
            Value::Int(x) => V::Int(*x),
            Value::UInt(x) => V::UInt(*x),
            Value::Hex(x) => V::Hex(*x),
            Value::Enum { raw, name } => V::Enum {
                raw: *raw,
                name: strings.id(name),
            },
            Value::CodeAddr(x) => V::Code(*x),
            Value::Str(s) => V::Str(strings.id(s)),
            Value::Bool(b) => V::Bool(*b),
            Value::Float(f) => V::Float(*f),
        }
    }
}

/// A call, decoded from (or to be encoded to) its bytes. Reused from call to call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Call {
    /// `None`: the entry predates the log.
    pub start: Option<u64>,
    /// `None`: the call had not returned when the log ended.
    pub end: Option<u64>,
    /// Arrival order in the log: the last tie-break of the sort, so output is deterministic.
    pub seq: u64,
    pub pid: u32,
    pub tid: u32,
    pub name: u32,
    pub instant: bool,
    /// (name, value)
    pub args: Vec<(u32, V)>,
    pub results: Vec<(u32, V)>,
    /// (key, value)
    pub links: Vec<(u32, u64)>,
}

/// The sort key: start time, then the longer (outer) call first, then arrival.
pub type Key = (u64, u64, u64);

pub const HEADER: usize = 40;

impl Call {
    /// The argument or result named `id`.
    pub fn value(&self, id: u32) -> Option<V> {
        self.args
            .iter()
            .chain(self.results.iter())
            .find(|a| a.0 == id)
            .map(|a| a.1)
    }

    pub fn key(&self) -> Key {
        (
            self.start.unwrap_or(0),
            !self.end.unwrap_or(u64::MAX),
            self.seq,
        )
    }

    /// The call's link values that flows join: the first value of each key (a call with two
    /// values of one key, e.g. source and destination device, is joined by the first). The
    /// reading pass counts and the Perfetto writer joins by this same rule.
    pub fn flow_links(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.links
            .iter()
            .enumerate()
            .filter(|&(i, &(k, _))| !self.links[..i].iter().any(|l| l.0 == k))
            .map(|(_, &l)| l)
    }

    /// Appends the encoded call to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (s, e, q) = self.key();
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(&q.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.tid.to_le_bytes());
        out.extend_from_slice(&self.name.to_le_bytes());
        let flags = u8::from(self.instant)
            | (u8::from(self.start.is_none()) << 1)
            | (u8::from(self.end.is_none()) << 2);
        let counts = |n: usize| n.min(255) as u8;
        out.extend_from_slice(&[
            flags,
            counts(self.args.len()),
            counts(self.results.len()),
            counts(self.links.len()),
        ]);
        for (n, v) in self
            .args
            .iter()
            .take(255)
            .chain(self.results.iter().take(255))
        {
            varint(out, u64::from(*n));
            value(out, v);
        }
        for (k, v) in self.links.iter().take(255) {
            varint(out, u64::from(*k));
            varint(out, *v);
        }
    }

    /// Decodes `b` (as [`Call::encode`] wrote it) into `self`, reusing its vectors.
    pub fn decode(&mut self, b: &[u8]) {
        // One bounds check for the whole header (the decoding is a tenth of the writers'
        // work: each decodes every call).
        let (h, rest) = b.split_at(HEADER);
        let h: &[u8; HEADER] = h.try_into().expect("a call's header");
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        let flags = h[36];
        self.start = (flags & 2 == 0).then(|| u64_at(0));
        self.end = (flags & 4 == 0).then(|| !u64_at(8));
        self.seq = u64_at(16);
        self.pid = u32_at(24);
        self.tid = u32_at(28);
        self.name = u32_at(32);
        self.instant = flags & 1 != 0;
        let (na, nr, nl) = (h[37], h[38], h[39]);
        let mut r = Reader { b: rest };
        self.args.clear();
        self.results.clear();
        self.links.clear();
        // Extended from counted ranges: one capacity check per vector, not per value.
        let mut named = |_| (r.varint() as u32, r.value());
        self.args.extend((0..na).map(&mut named));
        self.results.extend((0..nr).map(&mut named));
        self.links
            .extend((0..nl).map(|_| (r.varint() as u32, r.varint())));
    }
}

/// The (pid, tid) of an encoded call, read from its header.
pub fn thread_of(b: &[u8]) -> (u32, u32) {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    (u32_at(24), u32_at(28))
}

/// The sort key of an encoded call, read from its header.
pub fn key_of(b: &[u8]) -> Key {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    (u64_at(0), u64_at(8), u64_at(16))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn value(out: &mut Vec<u8>, v: &V) {
    match *v {
        V::Int(x) => {
            out.push(0);
            varint(out, zigzag(x));
        }
        V::UInt(x) => {
            out.push(1);
            varint(out, x);
        }
        V::Hex(x) => {
            out.push(2);
            varint(out, x);
        }
        V::Enum { raw, name } => {
            out.push(3);
            varint(out, zigzag(raw));
            varint(out, u64::from(name));
        }
        V::Code(x) => {
            out.push(4);
            varint(out, x);
        }
        V::Str(s) => {
            out.push(5);
            varint(out, u64::from(s));
        }
        V::Bool(b) => out.extend_from_slice(&[6, u8::from(b)]),
        V::Float(f) => {
            out.push(7);
            out.extend_from_slice(&f.to_le_bytes());
        }
    }
}

/// What is left of an encoded call to read.
struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let (&x, rest) = self.b.split_first().expect("a call's bytes");
        self.b = rest;
        x
    }

    fn varint(&mut self) -> u64 {
        // Most are one byte (ids, small values).
        let x = self.byte();
        if x < 0x80 {
            return u64::from(x);
        }
        let mut v = u64::from(x & 0x7f);
        let mut shift = 7;
        loop {
            let x = self.byte();
            v |= u64::from(x & 0x7f) << shift;
            if x < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn signed(&mut self) -> i64 {
        let z = self.varint();
        ((z >> 1) as i64) ^ -((z & 1) as i64)
    }

    fn value(&mut self) -> V {
        match self.byte() {
            0 => V::Int(self.signed()),
            1 => V::UInt(self.varint()),
            2 => V::Hex(self.varint()),
            3 => {
                let raw = self.signed();
                V::Enum {
                    raw,
                    name: self.varint() as u32,
                }
            }
            4 => V::Code(self.varint()),
            5 => V::Str(self.varint() as u32),
            6 => V::Bool(self.byte() != 0),
            _ => {
                let (f, rest) = self.b.split_at(8);
                self.b = rest;
                V::Float(f64::from_le_bytes(f.try_into().unwrap()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_survives_encoding() {
        let c = Call {
            start: Some(123_456_789),
            end: None,
            seq: 7,
            pid: 10,
            tid: 11,
            name: 3,
            instant: false,
            args: vec![
                (1, V::Int(-5)),
                (2, V::Hex(0x5555_0000_1234)),
                (4, V::Enum { raw: -1, name: 9 }),
                (5, V::Float(1.5)),
                (6, V::Bool(true)),
                (7, V::Code(0x401000)),
                (8, V::Str(2)),
                // Ids past one varint byte.
                (300, V::Str(70_000)),
            ],
            results: vec![(0, V::UInt(u64::MAX))],
            links: vec![(12, 0xdead_beef)],
        };
        let mut b = Vec::new();
        c.encode(&mut b);
        let mut d = Call::default();
        d.decode(&b);
        assert_eq!(c, d);
        assert_eq!(key_of(&b), c.key());
        let no_start = Call {
            start: None,
            end: Some(5),
            ..Call::default()
        };
        b.clear();
        no_start.encode(&mut b);
        d.decode(&b);
        assert_eq!(d, no_start);
    }

    #[test]
    fn outer_calls_sort_before_inner_ones_at_equal_start() {
        let outer = Call {
            start: Some(10),
            end: Some(100),
            seq: 9,
            ..Call::default()
        };
        let inner = Call {
            start: Some(10),
            end: Some(20),
            seq: 1,
            ..Call::default()
        };
        let open = Call {
            start: Some(10),
            end: None,
            seq: 20,
            ..Call::default()
        };
        assert!(open.key() < outer.key() && outer.key() < inner.key());
    }
}
