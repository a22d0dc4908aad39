//! A minimal protobuf encoder for the few Perfetto messages the writer emits. Written by hand
//! rather than generated: the writer needs a dozen fields, and this costs no build time (the
//! generated crates cost 35 s to 210 s, see DESIGN.md) and no allocation beyond one buffer per
//! packet. Field numbers are Perfetto's (protos/perfetto/trace/...); the tests decode the
//! output with Perfetto's official generated schema.

/// A message being built: fields are appended in order.
#[derive(Default, Clone)]
pub struct Msg {
    pub buf: Vec<u8>,
}

pub use crate::calls::varint::put as varint;

impl Msg {
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.buf, (u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field (uint32/uint64/int32/int64 with non-negative values, bool, enum).
    pub fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        varint(&mut self.buf, v);
        self
    }

    /// An int64 field (two's complement varint, as protobuf encodes negative int64).
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.uint(field, v as u64)
    }

    pub fn fixed64(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 1);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.fixed64(field, v.to_bits())
    }

    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        varint(&mut self.buf, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    pub fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_protobuf() {
        let mut m = Msg::default();
        m.uint(1, 300).string(2, "hi").fixed64(47, 1).int(4, -1);
        assert_eq!(&m.buf[..3], &[0x08, 0xac, 0x02]);
        assert_eq!(&m.buf[3..7], &[0x12, 2, b'h', b'i']);
        // Field 47, wire type 1: key 377 as a varint.
        assert_eq!(&m.buf[7..9], &[0xf9, 0x02]);
        assert_eq!(m.buf[m.buf.len() - 10..].len(), 10); // -1 is ten varint bytes
    }
}
