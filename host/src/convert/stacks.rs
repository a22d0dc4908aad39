//! The stacks `record` took at its dumps (crate::stacks, `LOG.stacks`), in convert's outputs:
//! one instant per thread at the moment they were taken, `stack at dump(why=on-hang,
//! stack="load_batch (train.py:14) <- ...")`, fed into the sorted calls like any other, so
//! that log.txt lists it in the thread's timeline and each Perfetto trace marks the moment on
//! the thread's track with the stack as its annotation. Every frame is in `stack` (innermost
//! first), the telling ones in `top` (crate::stacks::frames). Only threads that have a track
//! (they made a traced call) get one; a log without stacks gets none.

use std::collections::HashMap;
use std::io;

use crate::calls::call::{Call, Strings, V};
use crate::calls::sources::Sources;
use crate::calls::CallSink;
use crate::stacks::{format, frames};
use crate::symbolize::Symbolizer;

/// The instants' name.
pub const STACK_AT_DUMP: &str = "stack at dump";

/// The instants' sequence numbers: above every call's, below the device slices'.
const STACK_SEQ: u64 = 1 << 62;

/// Feeds the logs' stacks into `sink` as instants, for the threads in `threads` (tid -> pid,
/// comm; numbered as the calls are), at most at `t_last`. How many it fed.
pub fn feed(
    sources: &Sources,
    threads: &HashMap<u32, (u32, String)>,
    strings: &mut Strings,
    sink: &mut impl CallSink,
    t_last: u64,
) -> io::Result<u64> {
    let mut fed = 0;
    let name = strings.id(STACK_AT_DUMP);
    let (why, top, stack) = (strings.id("why"), strings.id("top"), strings.id("stack"));
    for src in &sources.list {
        let (all, _bad) = format::read(&src.path);
        let mut sym = Symbolizer::default();
        for (n, p) in all.iter().enumerate() {
            frames::add_maps(&mut sym, p.pid, p);
            let time = sources.time(src.index, p.time).min(t_last);
            for t in &p.threads {
                let tid = sources.id(src.index, t.tid);
                if !threads.contains_key(&tid) {
                    continue;
                }
                let named = frames::named(&mut sym, p.pid, t);
                let all_frames: Vec<&str> = named.iter().map(|f| f.text.as_str()).collect();
                let c = Call {
                    start: Some(time),
                    end: Some(time),
                    // After every call of the log at the same time (arrival order breaks ties),
                    // below the device slices' (crate::convert::device, bit 63).
                    seq: STACK_SEQ + (n as u64) * 4096 + fed,
                    pid: sources.id(src.index, p.pid),
                    tid,
                    name,
                    instant: true,
                    args: vec![
                        (why, V::Str(strings.id(&p.why))),
                        (top, V::Str(strings.id(&frames::summary(&named)))),
                        (stack, V::Str(strings.id(&all_frames.join(" <- ")))),
                    ],
                    results: Vec::new(),
                    links: Vec::new(),
                };
                sink.see(&c, strings)?;
                fed += 1;
            }
        }
    }
    Ok(fed)
}
