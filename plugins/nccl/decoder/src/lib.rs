//! The `nccl` pack's decoder, as its plugin (`plugins/nccl/`, a cdylib) exports it and as the
//! bthost binary carries it built in: rccl's decoder, which is the NCCL API's (RCCL implements it with
//! the same names): a communicator's identity across ranks (its unique id), rank, size and
//! device; each rank's collectives numbered (`seq`) and joined across ranks (link key `coll`).

use abi_stable::std_types::{RResult, RString, RVec};
use bthost_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque, DecoderBox, DecoderConfig, Decoder_TO, PluginInfo,
    ABI_VERSION,
};
use bthost_rccl_decoder::RcclDecoder;

/// The pack version this plugin decodes (must equal packs/nccl/pack.toml's).
pub const PACK_VERSION: &str = env!("CARGO_PKG_VERSION");

pub extern "C" fn info() -> PluginInfo {
    PluginInfo {
        pack: "nccl".into(),
        pack_version: PACK_VERSION.into(),
        abi_version: ABI_VERSION.into(),
        links: RVec::from(vec!["comm".into(), "device".into(), "coll".into()]),
    }
}

pub extern "C" fn new_decoder(_cfg: &DecoderConfig) -> RResult<DecoderBox, RString> {
    RResult::ROk(Decoder_TO::from_value(RcclDecoder::default(), TD_Opaque))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RSlice, RStr};
    use bthost_plugin_api::{Arg, Decoder, Event, EventKind, Phase, Record, Value};

    fn arg(name: &'static str, value: Value) -> Arg {
        Arg {
            name: name.into(),
            value,
        }
    }

    fn ok() -> Arg {
        arg(
            "ret",
            Value::Enum {
                raw: 0,
                name: "ncclSuccess".into(),
            },
        )
    }

    fn feed(d: &mut RcclDecoder, probe: &'static str, pid: u32, fields: &[Arg]) -> Event {
        let rec = Record {
            line: 1,
            probe: RStr::from_str(probe),
            phase: Phase::Call,
            pid,
            tid: pid,
            ts: 1_000,
            dur: 50,
            fields: RSlice::from_slice(fields),
        };
        let mut out = RVec::from(vec![Event {
            kind: EventKind::Complete,
            pid,
            tid: pid,
            ts: 1_000,
            dur: 50,
            name: probe.into(),
            pack: "nccl".into(),
            args: RVec::from(fields.to_vec()),
            links: RVec::new(),
        }]);
        assert!(d.on_record(&rec, &mut out).is_ok());
        out.into_iter().next().unwrap()
    }

    /// Two ranks of one communicator (one unique id, two processes): NCCL's own spelling
    /// ncclAlltoAll is numbered as a collective and joins the ranks.
    #[test]
    fn nccl_s_alltoall_is_one_collective_on_all_ranks() {
        let mut d = RcclDecoder::default();
        let mut colls = Vec::new();
        for (pid, rank, comm) in [(10, 0, 0xa0u64), (20, 1, 0xb0)] {
            let init = [
                arg("comm", Value::Hex(comm)),
                arg("nranks", Value::Int(2)),
                arg("rank", Value::Int(rank)),
                arg("uniqueId", Value::UInt(0x5eed)),
                ok(),
            ];
            feed(&mut d, "ncclCommInitRank", pid, &init);
            let a2a = [
                arg("count", Value::UInt(8)),
                arg("datatype", Value::Int(10)),
                arg("comm", Value::Hex(comm)),
                ok(),
            ];
            let e = feed(&mut d, "ncclAlltoAll", pid, &a2a);
            assert_eq!(e.arg("seq").and_then(Value::as_u64), Some(1), "{e:?}");
            colls.push((e.link("comm"), e.link("coll")));
        }
        assert!(colls[0].0.is_some() && colls[0] == colls[1], "{colls:?}");
    }

    #[test]
    fn the_plugin_is_for_the_nccl_pack() {
        assert_eq!(info().pack.as_str(), "nccl");
    }
}
