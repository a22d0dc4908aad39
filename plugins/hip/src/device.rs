//! Tracking the current device per thread.

use std::collections::HashMap;

use abi_stable::std_types::{RResult, RString, RVec};
use bthost_plugin_api::{Decoder, Event, Phase, Record, Value};

const DEVICE: &str = "device";

#[derive(Default, Debug)]
pub struct DeviceTracker {
    /// tid -> current device.
    current: HashMap<u32, i64>,
}

impl DeviceTracker {
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
        let device = match rec.probe.as_str() {
            "hipSetDevice" | "hipGetDevice" => rec.field("deviceId"),
            _ => return Ok(()),
        };
        let Some(dev) = device.and_then(|a| a.value.as_i64()) else {
            return Err(format!("{} without a deviceId field", rec.probe));
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
