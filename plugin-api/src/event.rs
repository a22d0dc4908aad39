//! What a decoder returns: events on a thread's timeline, with named fields and link keys.

use abi_stable::{
    std_types::{RStr, RString, RVec},
    StableAbi,
};

/// The shape of an event on its thread's track.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A call began and has not ended yet (its exit is a later event, or never comes).
    Begin,
    /// The innermost open call of the same name on the thread ended.
    End,
    /// A whole call: `ts` .. `ts + dur`.
    Complete,
    /// A point in time.
    Instant,
}

/// A decoded value.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    UInt(u64),
    /// An opaque handle or pointer: shown in hex.
    Hex(u64),
    /// A value of a named enumeration, e.g. a `hipError_t`.
    Enum {
        raw: i64,
        name: RStr<'static>,
    },
    /// A code address, to be symbolized offline.
    CodeAddr(u64),
    Str(RString),
    Bool(bool),
    Float(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a number of any kind.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(v) => Some(v as u64),
            Value::UInt(v) | Value::Hex(v) | Value::CodeAddr(v) => Some(v),
            Value::Enum { raw, .. } => Some(raw as u64),
            Value::Bool(b) => Some(b as u64),
            Value::Str(_) | Value::Float(_) => None,
        }
    }

    /// The value as a signed integer, if it is a number of any kind.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_u64().map(|v| v as i64)
    }
}

/// A named argument or result of a call.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: RStr<'static>,
    pub value: Value,
}

/// A link-key value: events that share `key` = `value` are joined by flows in the traces.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    pub key: RStr<'static>,
    pub value: u64,
}

/// One event on a thread's timeline.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub pid: u32,
    pub tid: u32,
    pub ts: u64,
    pub dur: u64,
    /// The call's name (for `End`, the name of the call it ends).
    pub name: RStr<'static>,
    /// Which pack produced it.
    pub pack: RStr<'static>,
    pub args: RVec<Arg>,
    pub links: RVec<Link>,
}

impl Event {
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args
            .iter()
            .find(|a| a.name.as_str() == name)
            .map(|a| &a.value)
    }

    pub fn link(&self, key: &str) -> Option<u64> {
        self.links
            .iter()
            .find(|l| l.key.as_str() == key)
            .map(|l| l.value)
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key.
    pub fn set_link(&mut self, key: RStr<'static>, value: u64) {
        match self.links.iter_mut().find(|l| l.key == key) {
            Some(l) => l.value = value,
            None => self.links.push(Link { key, value }),
        }
    }
}
