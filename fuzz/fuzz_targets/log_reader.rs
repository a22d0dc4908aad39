//! Fuzzes the log reader: any bytes after a valid header (the hip pack's schema, as
//! `bthost build` writes it, for printed records, records in maps and the flight recorder)
//! must decode without a panic, whatever the lines hold.
//! Run: `cd fuzz && cargo fuzz run log_reader` (as the README says).
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use bthost::convert::decode_log;
use bthost::registry::{Registry, SearchPaths};
use libfuzzer_sys::fuzz_target;

struct Setup {
    registry: Registry,
    /// The header of each way records leave the kernel (log formats 2 and 3).
    headers: Vec<Vec<u8>>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let packs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs");
        let registry = Registry::discover(&SearchPaths { packs: vec![packs], plugins: vec![] }, false);
        let hip = &registry.entries["hip"].pack;
        let input = bthost::compose::PackInput {
            pack: hip,
            library: "/lib/x86_64-linux-gnu/libamdhip64.so.5".into(),
            functions: bthost::library::symbols::Functions::from_names(hip.probes.iter().map(|p| p.function.clone())),
            nested: Vec::new(),
        };
        use bthost::compose::emit::Emit;
        let headers = [Emit::Printf, Emit::Drained { period_ms: 50 }, Emit::Ring { per_thread: 8 }]
            .into_iter()
            .map(|emit| {
                let opts = bthost::compose::Options { emit, ..Default::default() };
                let built = bthost::compose::compose(std::slice::from_ref(&input), &semver::Version::new(0, 17, 0), &opts).unwrap();
                built.schema.to_text().into_bytes()
            })
            .collect();
        Setup { registry, headers }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let path = std::env::temp_dir().join(format!("bthost-fuzz-{}.log", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    // Half the inputs after a valid header (records, dumps, damage), half raw (no header).
    if let Some(b) = data.first().filter(|b| *b & 1 == 0) {
        f.write_all(&s.headers[usize::from(b >> 1) % s.headers.len()]).unwrap();
    }
    f.write_all(data).unwrap();
    drop(f);
    let _ = decode_log(&s.registry, &path, None, |_, evs| evs.clear());
});
