//! Converter throughput and memory on a generated log in the real record format: the hip and
//! rccl packs' schema (as `bthost build` writes it), threads of several processes, calls of
//! every record id with plausible values, and in-flight entries at the end. The same log
//! through `wc -l` is the floor.
//!
//! `cargo bench -p bthost-tests --bench convert_throughput` (BTHOST_BENCH_LOG_MB, default 1024).
//! Prints MB/s and the converter's peak RSS (getrusage of the child).

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use bthost::compose::{compose, Options, PackInput};
use bthost::library::symbols::Functions;
use bthost::pack::manifest;
use bthost_tests::*;

#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

fn children_maxrss_kb() -> i64 {
    let mut r = Rusage::default();
    // SAFETY: RUSAGE_CHILDREN (-1) fills the struct, which has the kernel's layout.
    unsafe { getrusage(-1, &mut r) };
    r.maxrss
}

fn main() {
    let mb: u64 = std::env::var("BTHOST_BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = scratch("bench-convert");
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
        })
        .collect();
    let built = compose(
        &inputs,
        &semver::Version::new(0, 17, 0),
        &Options::default(),
    )
    .unwrap();
    let log = dir.join("big.log");
    let t = Instant::now();
    {
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&log).unwrap());
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
        let mut line = String::with_capacity(256);
        let record = |line: &mut String,
                      r: &bthost::compose::schema::RecordSpec,
                      tid: u32,
                      ts: u64,
                      dur: u64,
                      x: u64| {
            use std::fmt::Write as _;
            line.clear();
            let _ = write!(line, "{:x} {tid:x} {ts:x} {dur:x}", r.id);
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
        while written < mb << 20 {
            // The thread whose clock is furthest behind makes the next call: exits stay in order.
            let t = (0..threads.len()).min_by_key(|&i| clock[i]).unwrap();
            let (_, tid) = threads[t];
            let x = rnd();
            let start = clock[t] + 300 + (x >> 40) % 3_000;
            let mut inner_end = start;
            if x % 8 == 0 {
                for k in 0..2u64 {
                    let y = rnd();
                    let r = calls[(y % calls.len() as u64) as usize];
                    let s = inner_end + 100 + k * 50;
                    let d = 200 + (y >> 20) % 2_000;
                    record(&mut line, r, tid, s, d, y);
                    w.write_all(line.as_bytes()).unwrap();
                    written += line.len() as u64;
                    inner_end = s + d;
                }
            }
            let r = calls[(x % calls.len() as u64) as usize];
            let dur = (inner_end - start) + 500 + (x >> 20) % 5_000;
            record(&mut line, r, tid, start, dur, x);
            w.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
            clock[t] = start + dur;
        }
        w.write_all(b"#E in-flight calls\n").unwrap();
    }
    let size = std::fs::metadata(&log).unwrap().len();
    println!(
        "generated {:.0} MB in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let o = Command::new("wc").arg("-l").arg(&log).output().unwrap();
    let wc = t.elapsed().as_secs_f64();
    println!(
        "wc -l: {} lines, {:.0} MB/s",
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("?"),
        size as f64 / 1e6 / wc
    );

    let bin = out_dir().join("bthost");
    assert!(
        bin.is_file(),
        "build bthost in release first: cargo build --release -p bthost"
    );
    let before = children_maxrss_kb();
    let t = Instant::now();
    let o = Command::new(&bin)
        .arg("convert")
        .arg(&log)
        .arg("-o")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rss = children_maxrss_kb().max(before);
    println!(
        "bthost convert: {:.1} s, {:.0} MB/s, peak RSS {} MB (log {:.0} MB)",
        secs,
        size as f64 / 1e6 / secs,
        rss / 1024,
        size as f64 / 1e6
    );
}
