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
        let mut ts: u64 = 0x5_0000_0000_0000;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut written = 0u64;
        let mut line = String::with_capacity(256);
        while written < mb << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = calls[(x % calls.len() as u64) as usize];
            let (_, tid) = threads[(x >> 8) as usize % threads.len()];
            ts += 1_000 + (x >> 40) % 5_000;
            line.clear();
            use std::fmt::Write as _;
            let _ = write!(
                line,
                "{:x} {tid:x} {ts:x} {:x}",
                r.id,
                500 + (x >> 20) % 50_000
            );
            for f in &r.fields {
                for s in 0..f.ty.slots() {
                    let v = match f.ty {
                        bthost::pack::types::FieldType::Ptr => {
                            0x5555_0000_0000 + ((x >> (s * 3)) & 0xffff) * 0x100
                        }
                        _ => (x >> (8 + s)) % 8,
                    };
                    let _ = write!(line, " {v:x}");
                }
            }
            line.push('\n');
            w.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
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
