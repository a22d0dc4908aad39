//! A generated log in the real record format, for the converter's benchmark and tests: the
//! hip and rccl packs' schema (as `bthost build` writes it), 64 threads of 8 processes, calls
//! of every record id with plausible values, written as bpftrace writes them (each thread's
//! calls one after another, one record per call at its exit, two records per printf as the
//! script pairs them (the second a continuation line), threads interleaved in exit order; one
//! call in eight wraps two inner calls, whose records come first).

use std::io::Write;
use std::path::Path;

use bthost::compose::{compose, Options, PackInput};
use bthost::library::symbols::Functions;
use bthost::pack::manifest;

use crate::root;

/// The script `bthost build --packs hip,rccl` makes for bpftrace 0.17, with every probe
/// kept (library paths made up: only the schema and the record format matter here).
pub fn hip_rccl_built() -> bthost::compose::Built {
    hip_rccl_built_as(bthost::compose::emit::Emit::Printf)
}

/// The same, with records leaving the kernel as `emit` says.
pub fn hip_rccl_built_as(emit: bthost::compose::emit::Emit) -> bthost::compose::Built {
    let packs: Vec<_> = ["packs/hip", "packs/rccl"]
        .iter()
        .map(|p| manifest::load(&root().join(p)).unwrap())
        .collect();
    let inputs: Vec<PackInput> = packs
        .iter()
        .map(|p| PackInput {
            pack: p,
            library: format!("/lib/{}", p.library.soname).into(),
            functions: Functions::from_names(p.probes.iter().map(|x| x.function.clone())),
            nested: p
                .nested
                .iter()
                .map(|n| (format!("/lib/{}", n.library).into(), true))
                .collect(),
            lib_version: None,
            also: Vec::new(),
        })
        .collect();
    let options = Options {
        emit,
        ..Options::default()
    };
    compose(&inputs, &semver::Version::new(0, 17, 0), &options).unwrap()
}

/// Writes about `bytes` bytes of log to `log`, ending with two calls in flight (as the
/// script's END prints them).
pub fn generate_log(log: &Path, bytes: u64) {
    let built = hip_rccl_built();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(log).unwrap());
    w.write_all(b"Attaching 120 probes...\n").unwrap();
    w.write_all(built.schema.to_text().as_bytes()).unwrap();
    let threads: Vec<(u32, u32)> = (0..64).map(|i| (10_000 + i / 8, 20_000 + i)).collect();
    for (pid, tid) in &threads {
        writeln!(w, "T {pid:x} {tid:x} rank{}", pid % 8).unwrap();
    }
    let calls: Vec<_> = built
        .schema
        .records
        .iter()
        .filter(|r| r.phase == bthost_plugin_api::Phase::Call)
        .collect();
    // As bpftrace writes them: each thread's calls one after another, one record per call
    // at its exit, threads interleaved in exit order; one call in eight wraps two inner
    // calls (RCCL calling HIP), whose records come before the outer one's.
    let mut clock: Vec<u64> = vec![0x5_0000_0000_0000; threads.len()];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut written = 0u64;
    // Format 2: `<id> <tid> <exit> <dur> <fields>`, or `+<id> <exit - previous exit> <dur>
    // <fields>` continuing the thread's waiting record in the same printf.
    let fields = |line: &mut String, r: &bthost::compose::schema::RecordSpec, x: u64| {
        use std::fmt::Write as _;
        for f in &r.fields {
            for s in 0..f.ty.slots() {
                let v = match f.ty {
                    bthost::pack::types::FieldType::Ptr => {
                        0x5555_0000_0000 + ((x >> (s * 3)) & 0xff) * 0x100
                    }
                    _ => (x >> (8 + s)) % 8,
                };
                let _ = write!(line, " {v:x}");
            }
        }
        line.push('\n');
    };
    // Each thread's record waiting for its pair: its line, and its exit time.
    let mut held: Vec<Option<(String, u64)>> = vec![None; threads.len()];
    let mut record = |w: &mut std::io::BufWriter<std::fs::File>,
                      t: usize,
                      r: &bthost::compose::schema::RecordSpec,
                      start: u64,
                      dur: u64,
                      x: u64|
     -> u64 {
        use std::fmt::Write as _;
        let tid = threads[t].1;
        let exit = start + dur;
        let mut line = String::with_capacity(128);
        match held[t].take() {
            None => {
                let _ = write!(line, "{:x} {tid:x} {exit:x} {dur:x}", r.id);
                fields(&mut line, r, x);
                held[t] = Some((line, exit));
                0
            }
            Some((first, at)) => {
                let _ = write!(line, "{first}+{:x} {:x} {dur:x}", r.id, exit - at);
                fields(&mut line, r, x);
                w.write_all(line.as_bytes()).unwrap();
                line.len() as u64
            }
        }
    };
    while written < bytes {
        // The thread whose clock is furthest behind makes the next call: exits stay in order.
        let t = (0..threads.len()).min_by_key(|&i| clock[i]).unwrap();
        let x = rnd();
        let start = clock[t] + 300 + (x >> 40) % 3_000;
        let mut inner_end = start;
        if x % 8 == 0 {
            for k in 0..2u64 {
                let y = rnd();
                let r = calls[(y % calls.len() as u64) as usize];
                let s = inner_end + 100 + k * 50;
                let d = 200 + (y >> 20) % 2_000;
                written += record(&mut w, t, r, s, d, y);
                inner_end = s + d;
            }
        }
        let r = calls[(x % calls.len() as u64) as usize];
        let dur = (inner_end - start) + 500 + (x >> 20) % 5_000;
        written += record(&mut w, t, r, start, dur, x);
        clock[t] = start + dur;
    }
    // Records still waiting: END prints them as bpftrace prints the held map.
    let waiting: Vec<(usize, String)> = held
        .iter_mut()
        .enumerate()
        .filter_map(|(t, h)| h.take().map(|(line, _)| (t, line)))
        .collect();
    w.write_all(b"#E in-flight calls\n").unwrap();
    for (t, line) in waiting {
        // `<id> <tid> <values>` (hex) to `@b[<tid>]: (<id << 8 | n>, <values>)` (decimal).
        let nums: Vec<u64> = line
            .split_whitespace()
            .map(|v| u64::from_str_radix(v, 16).unwrap())
            .collect();
        let mut tuple = vec![((nums[0] << 8) | (nums.len() as u64 - 2)).to_string()];
        tuple.extend(nums[2..].iter().map(u64::to_string));
        writeln!(w, "@b[{}]: ({})", threads[t].1, tuple.join(", ")).unwrap();
    }
    let entries: Vec<_> = built
        .schema
        .records
        .iter()
        .filter(|r| r.phase == bthost_plugin_api::Phase::Entry)
        .take(2)
        .collect();
    for (i, r) in entries.iter().enumerate() {
        let (_, tid) = threads[i];
        let mut values = vec![(clock[i] + 1_000).to_string()];
        for f in &r.fields {
            values.extend((0..f.ty.slots()).map(|_| "1".to_string()));
        }
        writeln!(w, "@e{:x}[{tid}]: ({})", r.id, values.join(", ")).unwrap();
    }
    w.flush().unwrap();
}
