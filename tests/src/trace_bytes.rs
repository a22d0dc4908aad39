//! What a call costs in a Perfetto trace, in bytes, read off the wire format field by field:
//! the fixed fields of its slice's packets (framing, timestamp, sequence, track event framing,
//! type, track, name), its annotations (debug annotations: framing, names and values) and its
//! flows (flow ids), against everything else (track descriptors, interned data, the first
//! packet). For the convert bench's "bytes per call" lines; field numbers are Perfetto's.

use std::io::{BufReader, Read};
use std::path::Path;

/// Bytes of a trace by what they carry; `slices`: slices and instants begun.
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceBytes {
    pub slices: u64,
    pub packet: u64,
    pub annotations: u64,
    pub flows: u64,
    pub other: u64,
}

impl TraceBytes {
    pub fn total(&self) -> u64 {
        self.packet + self.annotations + self.flows + self.other
    }
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let c = *b.get(*i)?;
        *i += 1;
        v |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            return Some(v);
        }
    }
    None
}

/// One field of a message.
struct Field<'a> {
    number: u64,
    /// Its bytes, its key included.
    bytes: u64,
    /// A length-delimited field's payload.
    payload: Option<&'a [u8]>,
    /// A varint field's value.
    value: Option<u64>,
}

/// The fields of a message.
fn fields(b: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let Some(key) = varint(b, &mut i) else { break };
        let mut value = None;
        let payload = match key & 7 {
            0 => {
                value = varint(b, &mut i);
                None
            }
            1 => {
                i += 8;
                None
            }
            5 => {
                i += 4;
                None
            }
            2 => {
                let Some(n) = varint(b, &mut i) else { break };
                let p = b.get(i..i + n as usize);
                i += n as usize;
                p
            }
            _ => break,
        };
        out.push(Field {
            number: key >> 3,
            bytes: (i.min(b.len()) - start) as u64,
            payload,
            value,
        });
    }
    out
}

/// Reads the trace at `path` packet by packet (nothing but one packet held).
pub fn trace_bytes(path: &Path) -> TraceBytes {
    const TRACK_EVENT: u64 = 11;
    const TIMESTAMP: u64 = 8;
    const SEQ_ID: u64 = 10;
    const SEQ_FLAGS: u64 = 13;
    const TE_DEBUG: u64 = 4;
    const TE_TYPE: u64 = 9;
    const TE_FLOWS: [u64; 2] = [47, 48];
    let mut r = BufReader::new(std::fs::File::open(path).expect("open the trace"));
    let mut t = TraceBytes::default();
    let mut packet = Vec::new();
    loop {
        // Trace.packet: key 0x0a, a varint length, the packet.
        let mut head = [0u8; 1];
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let mut len = 0u64;
        let mut framing = 1;
        for shift in (0..64).step_by(7) {
            let mut c = [0u8; 1];
            r.read_exact(&mut c).expect("a packet's length");
            framing += 1;
            len |= u64::from(c[0] & 0x7f) << shift;
            if c[0] < 0x80 {
                break;
            }
        }
        packet.resize(len as usize, 0);
        r.read_exact(&mut packet).expect("a whole packet");
        let fs = fields(&packet);
        let Some(te) = fs.iter().find(|f| f.number == TRACK_EVENT) else {
            t.other += framing + len;
            continue;
        };
        t.packet += framing;
        for f in &fs {
            match f.number {
                TIMESTAMP | SEQ_ID | SEQ_FLAGS => t.packet += f.bytes,
                TRACK_EVENT => {}
                _ => t.other += f.bytes,
            }
        }
        let te_payload = te.payload.unwrap_or(&[]);
        t.packet += te.bytes - te_payload.len() as u64;
        for f in fields(te_payload) {
            match f.number {
                TE_DEBUG => t.annotations += f.bytes,
                n if TE_FLOWS.contains(&n) => t.flows += f.bytes,
                TE_TYPE => {
                    t.packet += f.bytes;
                    // A slice or instant begun (TYPE_SLICE_BEGIN 1, TYPE_INSTANT 3), not
                    // its end.
                    t.slices += u64::from(matches!(f.value, Some(1 | 3)));
                }
                _ => t.packet += f.bytes,
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice's two packets, by hand: BEGIN (timestamp, track event {type, track, name, one
    /// annotation, one flow id}, sequence id) and END; then a descriptor packet.
    #[test]
    fn each_byte_is_counted_once_under_what_it_carries() {
        let te_begin: Vec<u8> = [
            &[0x48, 1, 0x58, 1, 0x50, 1][..], // type, track_uuid, name_iid
            &[0x22, 4, 0x08, 1, 0x20, 5][..], // debug annotation {name, int}
            &[0xf9, 0x02, 1, 0, 0, 0, 0, 0, 0, 0][..], // flow_ids (fixed64)
        ]
        .concat();
        let begin: Vec<u8> = [
            &[0x40, 7][..], // timestamp
            &[0x5a, te_begin.len() as u8][..],
            &te_begin[..],
            &[0x50, 1][..], // trusted_packet_sequence_id
        ]
        .concat();
        let end: Vec<u8> = [&[0x40, 3, 0x5a, 4, 0x48, 2, 0x58, 1, 0x50, 1][..]].concat();
        let descriptor: Vec<u8> = [0xe2, 0x03, 2, 0x08, 1].to_vec();
        let mut trace = Vec::new();
        for p in [&begin, &end, &descriptor] {
            trace.push(0x0a);
            trace.push(p.len() as u8);
            trace.extend_from_slice(p);
        }
        let path = std::env::temp_dir().join(format!("bthost-trace-bytes-{}", std::process::id()));
        std::fs::write(&path, &trace).unwrap();
        let t = trace_bytes(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(t.slices, 1);
        assert_eq!(t.annotations, 6);
        assert_eq!(t.flows, 10);
        assert_eq!(t.other, 2 + descriptor.len() as u64);
        assert_eq!(t.total(), trace.len() as u64);
        // BEGIN: framing 2, timestamp 2, track event framing 2, type/track/name 6, seq 2;
        // END: framing 2 and its 10 bytes.
        assert_eq!(t.packet, 14 + 12);
    }
}
