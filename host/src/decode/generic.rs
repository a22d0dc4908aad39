//! The decoding every record gets from the schema alone: numbers to typed, named values,
//! enum names from the pack's tables, link-key values. A pack with no plugin needs nothing more.

use std::collections::HashMap;

use abi_stable::std_types::{RStr, RVec};
use bthost_plugin_api::{Arg, Event, EventKind, Link, Phase, Value};

use super::intern::intern;
use crate::compose::schema::{phase_name, RecordSpec};
use crate::pack::types::FieldType;
use crate::pack::Pack;

struct FieldPlan {
    name: &'static str,
    ty: FieldType,
    enum_values: Option<HashMap<i64, &'static str>>,
    link: Option<&'static str>,
}

/// Everything needed to decode one record id, prepared once per log.
pub struct RecordPlan {
    pub pack: &'static str,
    pub function: &'static str,
    pub phase: Phase,
    fields: Vec<FieldPlan>,
    width: usize,
}

impl RecordPlan {
    pub fn new(spec: &RecordSpec, pack: Option<&Pack>) -> RecordPlan {
        let fields = spec
            .fields
            .iter()
            .map(|f| FieldPlan {
                name: intern(&f.name),
                ty: f.ty,
                enum_values: f.enum_name.as_ref().and_then(|e| {
                    let table = pack?.enums.get(e)?;
                    Some(table.values.iter().map(|(k, v)| (*k, intern(v))).collect())
                }),
                link: f.link.as_deref().map(intern),
            })
            .collect();
        RecordPlan {
            pack: intern(&spec.pack),
            function: intern(&spec.function),
            phase: spec.phase,
            fields,
            width: spec.raw_width(),
        }
    }

    /// How many numbers the record's fields take.
    pub fn width(&self) -> usize {
        self.width
    }

    pub fn phase_name(&self) -> &'static str {
        phase_name(self.phase)
    }

    /// Decodes `nums` (`tid ts [dur] fields...`) into `ev`, reusing its allocations (the hot
    /// path allocates nothing per record). Returns the entry time as the record gave it (0 when
    /// a call's entry was not seen).
    pub fn decode_into(&self, pid: u32, nums: &[u64], ev: &mut Event) -> Result<u64, String> {
        let fixed = if self.phase == Phase::Call { 3 } else { 2 };
        let want = fixed + self.width;
        if nums.len() != want {
            return Err(format!(
                "{} numbers where the schema has {want} (tid, time{}, {} fields){}",
                nums.len(),
                if self.phase == Phase::Call {
                    ", duration"
                } else {
                    ""
                },
                self.width,
                if nums.len() < want {
                    "; the line is cut short"
                } else {
                    ""
                }
            ));
        }
        let tid = nums[0] as u32;
        let mut ts = nums[1];
        let mut dur = if self.phase == Phase::Call {
            nums[2]
        } else {
            0
        };
        let mut kind = match self.phase {
            Phase::Entry => EventKind::Begin,
            Phase::Exit => EventKind::End,
            Phase::Call => EventKind::Complete,
        };
        if self.phase == Phase::Call && ts == 0 {
            // The call's entry was not seen (tracing began inside it): `dur` holds the exit time.
            ts = dur;
            dur = 0;
            kind = EventKind::End;
        }
        ev.kind = kind;
        ev.pid = pid;
        ev.tid = tid;
        ev.ts = ts;
        ev.dur = dur;
        ev.name = RStr::from_str(self.function);
        ev.pack = RStr::from_str(self.pack);
        ev.args.clear();
        ev.links.clear();
        let mut i = fixed;
        for f in &self.fields {
            let raw = f.ty.normalize(nums[i]);
            let value = match f.ty {
                FieldType::Dim3 => {
                    let (xy, z) = (nums[i], nums[i + 1]);
                    Value::Str(format!("{}x{}x{}", xy as u32, (xy >> 32) as u32, z as u32).into())
                }
                _ => typed(f, raw),
            };
            i += f.ty.slots();
            if let Some(key) = f.link {
                ev.links.push(Link {
                    key: RStr::from_str(key),
                    value: raw,
                });
            }
            ev.args.push(Arg {
                name: RStr::from_str(f.name),
                value,
            });
        }
        Ok(nums[1])
    }
}

/// An event with nothing in it, whose allocations [`RecordPlan::decode_into`] reuses.
pub fn empty_event() -> Event {
    Event {
        kind: EventKind::Instant,
        pid: 0,
        tid: 0,
        ts: 0,
        dur: 0,
        name: RStr::from_str(""),
        pack: RStr::from_str(""),
        args: RVec::new(),
        links: RVec::new(),
    }
}

fn typed(f: &FieldPlan, raw: u64) -> Value {
    if let Some(table) = &f.enum_values {
        let v = raw as i64;
        match table.get(&v) {
            Some(name) => {
                return Value::Enum {
                    raw: v,
                    name: RStr::from_str(name),
                }
            }
            // A handle's table names its special values only; any other is the handle.
            None if f.ty == FieldType::Ptr => {}
            None => return Value::Int(v),
        }
    }
    match f.ty {
        t if t.signed() => Value::Int(raw as i64),
        FieldType::Ptr => Value::Hex(raw),
        FieldType::Code => Value::CodeAddr(raw),
        FieldType::Bool => Value::Bool(raw != 0),
        FieldType::F32 => Value::Float(f64::from(f32::from_bits(raw as u32))),
        FieldType::F64 => Value::Float(f64::from_bits(raw)),
        _ => Value::UInt(raw),
    }
}
