//! The hip decoder on recorded logs: two ranks on the HIP/RCCL stand-ins (tests/standins),
//! log format 1 from bpftrace 0.17 and format 2 (paired records, continuation lines) from
//! bpftrace 0.23 (see plugins/rccl/tests/recorded.rs for how they were recorded). Each rank
//! calls hipSetDevice(rank), which succeeds on the stand-in, then works on its device.

use std::path::Path;

use abi_stable::sabi_trait::TD_Opaque;
use bthost::calls::decode_log_with;
use bthost::registry::{Registry, SearchPaths};
use bthost_pack_hip::DeviceTracker;
use bthost_plugin_api::{Decoder_TO, Event};

#[test]
fn every_call_after_set_device_carries_the_device() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reg = Registry::discover(
        &SearchPaths {
            packs: vec![dir.join("../../packs")],
            plugins: vec![],
        },
        false,
    );
    // (log, pids of ranks 0 and 1)
    for (log, ranks) in [
        ("standin-2ranks.log", [25718u32, 25719]),
        ("standin-2ranks-format2.log", [24466, 24467]),
    ] {
        let dec = Decoder_TO::from_value(DeviceTracker::default(), TD_Opaque);
        let mut events: Vec<Event> = Vec::new();
        decode_log_with(
            &reg,
            &dir.join("tests/data").join(log),
            None,
            vec![("hip".into(), dec)],
            |_, evs| events.append(evs),
        )
        .unwrap();
        for (pid, device) in ranks.into_iter().zip([0u64, 1]) {
            let hip: Vec<&Event> = events
                .iter()
                .filter(|e| e.pid == pid && e.pack.as_str() == "hip")
                .collect();
            let set = hip
                .iter()
                .position(|e| e.name.as_str() == "hipSetDevice")
                .expect("hipSetDevice");
            // Before it (hipGetDeviceCount) the device is unknown; from it on, known.
            assert!(
                hip[..set].iter().all(|e| e.link("device").is_none()),
                "{log}"
            );
            assert!(hip[set..].len() > 5, "{log}");
            assert!(
                hip[set..].iter().all(|e| e.link("device") == Some(device)),
                "{log}: {pid}"
            );
        }
    }
}
