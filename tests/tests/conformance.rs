//! The conformance test every pack passes, present and future, with nothing written per pack:
//! its manifest parses; every variant states its bpftrace range and its composed script is
//! accepted by a real bpftrace of that range, attaching every probe; every probe's function
//! exists in the library (unless marked optional); its decoder never panics on garbage.

use std::process::Command;

use abi_stable::std_types::{RSlice, RStr, RVec};
use bthost::calls::decode_log;
use bthost::commands::build::{build, BpftraceChoice, BuildOptions};
use bthost::library::{self, LdCache};
use bthost::registry::{Registry, SearchPaths};
use bthost_plugin_api::{Arg, DecoderConfig, Phase, Record, Value};
use bthost_tests::*;

fn registry() -> Registry {
    Registry::discover(&SearchPaths::standard(&[]), true)
}

/// The packs of this repository's packs/ folder.
fn repo_packs(reg: &Registry) -> Vec<String> {
    let packs_dir = root().join("packs");
    let names: Vec<String> = reg
        .entries
        .values()
        .filter(|e| e.pack.dir.starts_with(&packs_dir))
        .map(|e| e.pack.name.clone())
        .collect();
    let folders = std::fs::read_dir(&packs_dir)
        .unwrap()
        .filter(|d| d.as_ref().unwrap().path().join("pack.toml").is_file())
        .count();
    assert_eq!(
        names.len(),
        folders,
        "some packs/ folders were skipped: {:#?}",
        reg.skipped
    );
    assert!(!names.is_empty());
    names
}

#[test]
fn every_manifest_parses_and_states_its_ranges() {
    let reg = registry();
    for name in repo_packs(&reg) {
        let p = &reg.entries[&name].pack;
        assert!(!p.variants.is_empty(), "{name}: no variants");
        for v in &p.variants {
            assert!(
                !v.range_text.trim().is_empty(),
                "{name}: a variant without a bpftrace range"
            );
            assert!(v.range.comparators.iter().any(|c| c.op == semver::Op::Less || c.op == semver::Op::LessEq),
                "{name}: variant {:?} has no upper bound: a future bpftrace may break it, so say which versions were checked", v.range_text);
        }
        assert!(!p.probes.is_empty());
    }
}

#[test]
fn every_probe_exists_in_its_library() {
    let reg = registry();
    let cache = LdCache::load();
    let libs = test_lib_overrides();
    for name in repo_packs(&reg) {
        let p = &reg.entries[&name].pack;
        let found = library::find(p, &libs, &cache).unwrap_or_else(|e| panic!("{e}"));
        let funcs = library::symbols::functions(&found.path).unwrap();
        // The probes for this file's version (a pack may carry layouts for others).
        let version = library::version::read(&found.path, &p.library.version_from);
        let missing: Vec<_> = p
            .probes_for(version.as_ref().map(|v| &v.version))
            .into_iter()
            .filter(|pr| !pr.optional && !funcs.probeable(&pr.function))
            .map(|pr| pr.function.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "pack {name}: {} lacks {missing:?} (mark them optional if some releases lack them)",
            found.path.display()
        );
    }
}

#[test]
fn every_variant_is_accepted_by_a_real_bpftrace() {
    if skip_root_tests() {
        return;
    }
    let reg = registry();
    let bpftraces = available_bpftraces();
    let libs = test_lib_overrides();
    let dir = scratch("conformance");
    let mut unchecked = Vec::new();
    for name in repo_packs(&reg) {
        let p = &reg.entries[&name].pack;
        for v in &p.variants {
            let checkers: Vec<_> = bpftraces
                .iter()
                .filter(|(_, bv)| v.range.matches(bv))
                .collect();
            if checkers.is_empty() && v.tested {
                unchecked.push(format!("{name} variant \"{}\"", v.range_text));
            }
            for (bin, bver) in checkers {
                let opts = BuildOptions {
                    packs: vec![name.clone()],
                    bpftrace: BpftraceChoice::Version(bver.clone()),
                    libs: libs
                        .iter()
                        .filter(|(k, _)| **k == name)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    script: bthost::compose::Options {
                        exit_after_begin: true,
                        ..Default::default()
                    },
                };
                let built =
                    build(&reg, &opts).unwrap_or_else(|e| panic!("{name} for {bver}: {e:#}"));
                let script = dir.join(format!("{name}-{bver}.bt"));
                std::fs::write(&script, &built.script).unwrap();
                run_built_script(bin, &script, &built, &format!("{name} on bpftrace {bver}"));
            }
        }
    }
    assert!(
        unchecked.is_empty(),
        "no bpftrace here to check {unchecked:?}; have {:?}. Run tests/bpftrace/setup-root.sh trixie (0.23) and sid (0.27), or name others in BTHOST_BPFTRACE_EXTRA",
        bpftraces.iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>()
    );
    for want in TESTED_BPFTRACES {
        assert!(
            bpftraces.iter().any(|(_, v)| v.to_string() == *want),
            "bpftrace {want} is not here (CI installs it: scripts/setup)"
        );
    }
}

/// A tiny deterministic generator, so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const NAMES: [&str; 6] = ["ret", "deviceId", "stream", "comm", "count", "x"];

fn garbage_value(r: &mut Rng) -> Value {
    match r.below(7) {
        0 => Value::Int(r.next() as i64),
        1 => Value::UInt(r.next()),
        2 => Value::Hex(r.next()),
        3 => Value::Enum {
            raw: r.next() as i64 % 3,
            name: RStr::from_str("hipSuccess"),
        },
        4 => Value::CodeAddr(r.next()),
        5 => Value::Str("garbage".into()),
        _ => Value::Bool(r.below(2) == 0),
    }
}

#[test]
fn decoders_never_panic_on_garbage_records() {
    let reg = registry();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for name in repo_packs(&reg) {
        let e = &reg.entries[&name];
        let Some(plugin) = &e.plugin else { continue };
        let cfg = DecoderConfig {
            log_pack_version: e.pack.version.to_string().into(),
        };
        let mut dec = (plugin.module.new_decoder())(&cfg).unwrap();
        let probes: Vec<&str> = e
            .pack
            .probes
            .iter()
            .map(|p| p.function.as_str())
            .chain(["", "bogus"])
            .collect();
        for _ in 0..20_000 {
            let fields: Vec<Arg> = (0..r.below(6))
                .map(|_| Arg {
                    name: RStr::from_str(NAMES[r.below(NAMES.len() as u64) as usize]),
                    value: garbage_value(&mut r),
                })
                .collect();
            let rec = Record {
                line: 1,
                probe: RStr::from_str(probes[r.below(probes.len() as u64) as usize]),
                phase: [Phase::Entry, Phase::Exit, Phase::Call][r.below(3) as usize],
                pid: r.below(4) as u32,
                tid: r.below(8) as u32,
                ts: r.next(),
                dur: r.next(),
                fields: RSlice::from_slice(&fields),
            };
            let mut out = RVec::new();
            let _ = dec.on_record(&rec, &mut out);
        }
        let mut out = RVec::new();
        dec.finish(&mut out);
    }
}

/// What `record` runs, for every pack on every bpftrace here: records stored in maps and the
/// flight recorder, with record's own probes (its requests, the pid filter, the hold at exit).
/// Every probe attaches (the attach sentinel is the script's last), and the last dump ends the
/// log.
#[test]
fn every_pack_records_in_every_way_on_a_real_bpftrace() {
    if skip_root_tests() {
        return;
    }
    let reg = registry();
    let libs = test_lib_overrides();
    let dir = scratch("conformance-record");
    let me = std::process::id().to_string();
    for name in repo_packs(&reg) {
        let p = &reg.entries[&name].pack;
        for (bin, bver) in available_bpftraces() {
            if !p.supports_bpftrace(&bver) {
                continue;
            }
            for (way, extra) in [
                ("maps", vec!["--pid", me.as_str()]),
                ("ring", vec!["--flight-recorder", "64"]),
            ] {
                let log = dir.join(format!("{name}-{bver}-{way}.log"));
                let mut cmd = Command::new(bthost_bin());
                cmd.args(["record", "--packs", &name, "--bpftrace-bin"])
                    .arg(&bin)
                    .args(&extra)
                    .args(["--duration", "0.2", "-o"])
                    .arg(&log);
                if let Some(l) = libs.get(&name) {
                    cmd.arg("--lib").arg(format!("{name}={}", l.display()));
                }
                let o = {
                    let _serial = system_wide_lock();
                    cmd.output().unwrap()
                };
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(o.status.success(), "{name} {bver} {way}: {err}");
                let text = std::fs::read_to_string(&log).unwrap();
                let script = std::fs::read_to_string(log.with_extension("log.bt")).unwrap();
                let want = probes_in(&script);
                assert!(
                    attached(&text).max(attached(&err)) >= want,
                    "{name} {bver} {way}: wanted Attaching {want} probes: {err}"
                );
                assert!(
                    text.contains("\n#Z ffffffff\n"),
                    "{name} {bver} {way}: {text}"
                );
                assert_no_script_warnings(
                    &format!("{text}\n{err}"),
                    &format!("{name} {bver} {way}: record's script"),
                );
            }
        }
    }
}

#[test]
fn the_log_reader_never_panics_on_garbage_lines() {
    let reg = registry();
    let dir = scratch("garbage-lines");
    let mut r = Rng(42);
    let ways = [
        bthost::compose::emit::Emit::Printf,
        bthost::compose::emit::Emit::Drained { period_ms: 50 },
        bthost::compose::emit::Emit::Ring { per_thread: 8 },
    ];
    for (name, emit) in repo_packs(&reg)
        .into_iter()
        .flat_map(|n| ways.iter().map(move |e| (n.clone(), e.clone())))
    {
        let opts = BuildOptions {
            packs: vec![name.clone()],
            bpftrace: BpftraceChoice::Version(semver::Version::new(0, 17, 0)),
            libs: test_lib_overrides()
                .into_iter()
                .filter(|(k, _)| *k == name)
                .collect(),
            script: bthost::compose::Options {
                emit,
                ..Default::default()
            },
        };
        let built = build(&reg, &opts).unwrap();
        let n_ids = built.schema.records.len() as u64 + 2;
        let mut log = built.schema.to_text().into_bytes();
        log.extend_from_slice(b"T 10 11 worker thread\n");
        for _ in 0..20_000 {
            match r.below(5) {
                // Well-formed numbers with a random id and field count.
                0 | 1 => {
                    let mut l = format!("{:x}", r.below(n_ids));
                    for _ in 0..r.below(12) {
                        l.push_str(&format!(" {:x}", r.next() >> r.below(64)));
                    }
                    log.extend_from_slice(l.as_bytes());
                }
                // Stored records, entries, counts and drain marks (log format 3), with random
                // ids, widths, keys and values (negative ones too).
                3 => {
                    let v = |r: &mut Rng| {
                        let x = r.next() >> r.below(64);
                        if r.below(8) == 0 {
                            format!("-{x}")
                        } else {
                            x.to_string()
                        }
                    };
                    let mut vals = Vec::new();
                    for _ in 0..r.below(14) {
                        vals.push(v(&mut r));
                    }
                    let l = match r.below(5) {
                        0 => format!(
                            "@r{}w{}[{}, {}]: ({}, {})",
                            r.below(2),
                            r.below(16),
                            r.below(64),
                            v(&mut r),
                            r.below(n_ids),
                            vals.join(", ")
                        ),
                        1 => format!(
                            "@f[{}, {}]: ({}, {}, {})",
                            r.below(64),
                            r.below(8),
                            v(&mut r),
                            r.below(n_ids << 8),
                            vals.join(", ")
                        ),
                        2 => format!(
                            "@p{}[{}, {}]: ({})",
                            r.below(8),
                            r.below(64),
                            r.below(n_ids),
                            vals.join(", ")
                        ),
                        3 => format!("@q[{}]: {}", r.below(64), v(&mut r)),
                        _ => format!("#D {:x}", r.next() >> r.below(64)),
                    };
                    log.extend_from_slice(l.as_bytes());
                }
                // Random bytes, including invalid UTF-8.
                2 => log.extend(
                    (0..r.below(40))
                        .map(|_| r.below(256) as u8)
                        .filter(|b| *b != b'\n'),
                ),
                _ => log.extend_from_slice(
                    [
                        "Lost 3 events",
                        "#S 1 x y z",
                        "T zz",
                        "@thr[1]: 1",
                        "ERROR: x",
                        "",
                    ][r.below(6) as usize]
                        .as_bytes(),
                ),
            }
            log.push(b'\n');
        }
        log.extend_from_slice(b"1 11 5"); // cut off by Ctrl-C
        let path = dir.join(format!(
            "{name}-{}.log",
            opts.script.emit.name().replace(' ', "-")
        ));
        std::fs::write(&path, &log).unwrap();
        let mut n = 0u64;
        let res = decode_log(&reg, &path, None, |_, evs| {
            n += evs.len() as u64;
            evs.clear();
        });
        let (_, diag, _) = res.unwrap_or_else(|e| panic!("{e}"));
        assert!(diag.count("garbage lines") > 0, "{diag}");
        assert_eq!(diag.count("cut-off last line"), 1, "{diag}");
        assert!(n > 0);
    }
}
