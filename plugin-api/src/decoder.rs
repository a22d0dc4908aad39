//! The stateful decoder a plugin gives the host: fed every record of its pack, in log order.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RString, RVec},
};

use crate::{event::Event, record::Record};

/// A pack's decoder. The host calls it with the records of its pack in log order (which is time
/// order per CPU, and per thread), so it may keep state per process or thread.
#[sabi_trait]
pub trait Decoder {
    /// `out` holds the host's generic decoding of `rec` (usually one event); edit, extend or
    /// clear it. An `Err` is reported with the record's line; the events in `out` are kept.
    fn on_record(&mut self, rec: &Record<'_>, out: &mut RVec<Event>) -> RResult<(), RString>;

    /// The log ended: append any events the decoder still holds.
    #[sabi(last_prefix_field)]
    fn finish(&mut self, out: &mut RVec<Event>);
}

/// The owned, type-erased decoder that crosses the plugin boundary.
pub type DecoderBox = Decoder_TO<'static, RBox<()>>;
