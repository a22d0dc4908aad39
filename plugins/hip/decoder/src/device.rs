//! Tracking the current device per thread.

use std::collections::HashMap;

use abi_stable::std_types::{RResult, RString, RVec};
use bthost_plugin_api::{Decoder, Event, Phase, Record, Value};

const DEVICE: &str = "device";

/// HIP's calls that set or report the thread's device, and the field holding it.
pub const HIP_DEVICE_CALLS: &[(&str, &str)] =
    &[("hipSetDevice", "deviceId"), ("hipGetDevice", "deviceId")];

/// The same runtime model serves CUDA (the cuda pack's plugin): a device per host thread,
/// set and read by calls named in `calls`.
#[derive(Debug)]
pub struct DeviceTracker {
    /// (function, field) pairs whose successful call sets or reports the current device.
    calls: &'static [(&'static str, &'static str)],
    /// tid -> current device.
    current: HashMap<u32, i64>,
}

impl Default for DeviceTracker {
    fn default() -> Self {
        DeviceTracker::new(HIP_DEVICE_CALLS)
    }
}

impl DeviceTracker {
    /// A tracker learning the device from `calls`: (function, field holding the device).
    pub fn new(calls: &'static [(&'static str, &'static str)]) -> DeviceTracker {
        DeviceTracker {
            calls,
            current: HashMap::new(),
        }
    }

    pub fn current(&self, tid: u32) -> Option<i64> {
        self.current.get(&tid).copied()
    }

    /// Learns from `rec`; returns an error text for records that contradict the schema.
    fn learn(&mut self, rec: &Record<'_>) -> Result<(), String> {
        if rec.phase != Phase::Call {
            return Ok(());
        }
        let ok = matches!(
            rec.field("ret").map(|a| &a.value),
            Some(Value::Enum { raw: 0, .. }) | Some(Value::Int(0))
        );
        if !ok {
            return Ok(()); // a failed call leaves the device as it was
        }
        let Some(&(_, field)) = self.calls.iter().find(|(f, _)| *f == rec.probe.as_str()) else {
            return Ok(());
        };
        let Some(dev) = rec.field(field).and_then(|a| a.value.as_i64()) else {
            return Err(format!("{} without a {field} field", rec.probe));
        };
        if !(0..=4096).contains(&dev) {
            return Err(format!(
                "{} reported device {dev}, which no machine has",
                rec.probe
            ));
        }
        self.current.insert(rec.tid, dev);
        Ok(())
    }
}

impl Decoder for DeviceTracker {
    fn on_record(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) -> RResult<(), RString> {
        let res = self.learn(rec);
        if let Some(dev) = self.current(rec.tid) {
            for e in out.iter_mut() {
                e.set_link(DEVICE.into(), dev as u64);
            }
        }
        match res {
            Ok(()) => RResult::ROk(()),
            Err(e) => RResult::RErr(e.into()),
        }
    }

    fn finish(&mut self, _out: &mut RVec<Event>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RSlice, RStr};
    use bthost_plugin_api::{Arg, EventKind};

    fn ret(raw: i64) -> Arg {
        let name = if raw == 0 {
            "hipSuccess"
        } else {
            "hipErrorInvalidDevice"
        };
        Arg {
            name: "ret".into(),
            value: Value::Enum {
                raw,
                name: RStr::from_str(name),
            },
        }
    }

    fn int(name: &'static str, v: i64) -> Arg {
        Arg {
            name: RStr::from_str(name),
            value: Value::Int(v),
        }
    }

    /// Feeds one record with a generic draft event; returns the event as the plugin left it.
    fn feed(
        t: &mut DeviceTracker,
        probe: &'static str,
        phase: Phase,
        tid: u32,
        fields: &[Arg],
    ) -> Event {
        let rec = Record {
            line: 1,
            probe: RStr::from_str(probe),
            phase,
            pid: 1,
            tid,
            ts: 10,
            dur: if phase == Phase::Call { 5 } else { 0 },
            fields: RSlice::from_slice(fields),
        };
        let kind = match phase {
            Phase::Entry => EventKind::Begin,
            Phase::Exit => EventKind::End,
            Phase::Call => EventKind::Complete,
        };
        let mut out = RVec::from(vec![Event {
            kind,
            pid: 1,
            tid,
            ts: 10,
            dur: 0,
            name: RStr::from_str(probe),
            pack: "hip".into(),
            args: fields.iter().cloned().collect(),
            links: RVec::new(),
        }]);
        let res = t.on_record(&rec, &mut out);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    // The records below are what the log lines of tests/e2e_hip.rs decode to, with successful
    // returns where a GPU would give them.
    #[test]
    fn a_successful_set_device_follows_the_thread() {
        let mut t = DeviceTracker::default();
        let before = feed(&mut t, "hipMalloc", Phase::Call, 7, &[ret(0)]);
        assert_eq!(before.link("device"), None, "unknown until learnt");
        let set = feed(
            &mut t,
            "hipSetDevice",
            Phase::Call,
            7,
            &[int("deviceId", 3), ret(0)],
        );
        assert_eq!(set.link("device"), Some(3));
        // A blocking call whose exit never came still carries the device on its entry.
        let sync = feed(&mut t, "hipStreamSynchronize", Phase::Entry, 7, &[]);
        assert_eq!(sync.link("device"), Some(3));
        // Other threads keep their own.
        assert_eq!(
            feed(&mut t, "hipFree", Phase::Entry, 8, &[]).link("device"),
            None
        );
    }

    #[test]
    fn a_failed_call_leaves_the_device_alone() {
        let mut t = DeviceTracker::default();
        feed(
            &mut t,
            "hipSetDevice",
            Phase::Call,
            7,
            &[int("deviceId", 1), ret(0)],
        );
        let failed = feed(
            &mut t,
            "hipSetDevice",
            Phase::Call,
            7,
            &[int("deviceId", 5), ret(101)],
        );
        assert_eq!(failed.link("device"), Some(1));
        assert_eq!(t.current(7), Some(1));
    }

    #[test]
    fn get_device_teaches_the_device_too() {
        let mut t = DeviceTracker::default();
        let got = feed(
            &mut t,
            "hipGetDevice",
            Phase::Call,
            9,
            &[int("deviceId", 2), ret(0)],
        );
        assert_eq!(got.link("device"), Some(2));
    }

    #[test]
    fn impossible_values_are_reported_not_learnt() {
        let mut t = DeviceTracker::default();
        let fields = [int("deviceId", -1), ret(0)];
        let rec = Record {
            line: 4,
            probe: RStr::from_str("hipGetDevice"),
            phase: Phase::Call,
            pid: 1,
            tid: 1,
            ts: 0,
            dur: 0,
            fields: RSlice::from_slice(&fields),
        };
        let mut out = RVec::new();
        let res = t.on_record(&rec, &mut out);
        assert!(res.is_err());
        assert_eq!(t.current(1), None);
        // A record without the field is an error, not a panic.
        let rec = Record {
            fields: RSlice::from_slice(&fields[1..]),
            ..rec
        };
        assert!(t.on_record(&rec, &mut out).is_err());
    }
}
