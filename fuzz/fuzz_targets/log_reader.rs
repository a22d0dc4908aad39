//! Fuzzes the log reader: any bytes after a valid header (the hip pack's schema, as
//! `bthost build` writes it) must decode without a panic, whatever the lines hold.
//! Run: `cd fuzz && cargo fuzz run log_reader` (as the README says).
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use bthost::convert::decode_log;
use bthost::registry::{Registry, SearchPaths};
use libfuzzer_sys::fuzz_target;

struct Setup {
    registry: Registry,
    header: Vec<u8>,
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
        let built = bthost::compose::compose(&[input], &semver::Version::new(0, 17, 0), &Default::default()).unwrap();
        let header = built.schema.to_text().into_bytes();
        Setup { registry, header }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let path = std::env::temp_dir().join(format!("bthost-fuzz-{}.log", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    // Half the inputs after a valid header (records, dumps, damage), half raw (no header).
    if data.first().is_some_and(|b| b & 1 == 0) {
        f.write_all(&s.header).unwrap();
    }
    f.write_all(data).unwrap();
    drop(f);
    let _ = decode_log(&s.registry, &path, None, |_, evs| evs.clear());
});
