//! The `cuda` pack's decoder, as its plugin (`plugins/cuda/`, a cdylib) exports it and as the
//! bthost binary carries it built in: the current device of each host thread (link key `device`).
//!
//! CUDA's runtime keeps a current device per host thread, as HIP's does; calls name streams
//! and pointers, not devices. hip's decoder tracks exactly that, given the calls to learn
//! from: here cudaSetDevice and cudaGetDevice, whose argument is `device`. Until a thread's
//! device is known, its events carry no `device` key (the thread may have set one before
//! tracing began).

use abi_stable::std_types::{RResult, RString, RVec};
use bthost_hip_decoder::DeviceTracker;
use bthost_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque, DecoderBox, DecoderConfig, Decoder_TO, PluginInfo,
    ABI_VERSION,
};

/// The pack version this plugin decodes (must equal packs/cuda/pack.toml's).
pub const PACK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The calls that set or report the thread's device, and their argument holding it.
pub const CUDA_DEVICE_CALLS: &[(&str, &str)] =
    &[("cudaSetDevice", "device"), ("cudaGetDevice", "device")];

pub extern "C" fn info() -> PluginInfo {
    PluginInfo {
        pack: "cuda".into(),
        pack_version: PACK_VERSION.into(),
        abi_version: ABI_VERSION.into(),
        links: RVec::from(vec!["device".into()]),
    }
}

pub extern "C" fn new_decoder(_cfg: &DecoderConfig) -> RResult<DecoderBox, RString> {
    RResult::ROk(Decoder_TO::from_value(
        DeviceTracker::new(CUDA_DEVICE_CALLS),
        TD_Opaque,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RSlice, RStr};
    use bthost_plugin_api::{Arg, Decoder, Event, EventKind, Phase, Record, Value};

    fn call<'a>(probe: &'a str, tid: u32, fields: &'a [Arg]) -> Record<'a> {
        Record {
            line: 1,
            probe: RStr::from_str(probe),
            phase: Phase::Call,
            pid: 7,
            tid,
            ts: 1_000,
            dur: 50,
            fields: RSlice::from_slice(fields),
        }
    }

    fn draft(name: &'static str, tid: u32) -> RVec<Event> {
        RVec::from(vec![Event {
            kind: EventKind::Complete,
            pid: 7,
            tid,
            ts: 1_000,
            dur: 50,
            name: name.into(),
            pack: "cuda".into(),
            args: RVec::new(),
            links: RVec::new(),
        }])
    }

    fn arg(name: &'static str, value: Value) -> Arg {
        Arg {
            name: name.into(),
            value,
        }
    }

    fn ret(raw: i64, name: &'static str) -> Arg {
        arg(
            "ret",
            Value::Enum {
                raw,
                name: name.into(),
            },
        )
    }

    #[test]
    fn a_thread_s_device_links_its_later_calls() {
        let mut d = DeviceTracker::new(CUDA_DEVICE_CALLS);
        let set = [arg("device", Value::Int(3)), ret(0, "cudaSuccess")];
        let mut out = draft("cudaSetDevice", 1);
        assert!(d
            .on_record(&call("cudaSetDevice", 1, &set), &mut out)
            .is_ok());
        assert_eq!(out[0].link("device"), Some(3));
        let mut later = draft("cudaStreamSynchronize", 1);
        assert!(d
            .on_record(&call("cudaStreamSynchronize", 1, &[]), &mut later)
            .is_ok());
        assert_eq!(later[0].link("device"), Some(3));
        // Another thread has its own device; a failed call teaches nothing.
        let failed = [
            arg("device", Value::Int(5)),
            ret(35, "cudaErrorInsufficientDriver"),
        ];
        let mut other = draft("cudaSetDevice", 2);
        assert!(d
            .on_record(&call("cudaSetDevice", 2, &failed), &mut other)
            .is_ok());
        assert_eq!(other[0].link("device"), None);
    }

    #[test]
    fn the_plugin_is_for_the_cuda_pack() {
        let i = info();
        assert_eq!(i.pack.as_str(), "cuda");
        assert_eq!(i.pack_version.as_str(), PACK_VERSION);
    }
}
