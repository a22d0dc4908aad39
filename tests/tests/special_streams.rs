//! HIP's special stream handles through the reading pass, on the log lines bpftrace writes:
//! 0 (the null stream), hipStreamLegacy (1) and hipStreamPerThread (2) read by their names in
//! the decoded calls, log.txt, the report and the device tracks (the packs' `enum` on a
//! `ptr` field: any other handle stays hex), and the completion model takes hipStreamPerThread,
//! and 0 in an `_spt` call, as the calling thread's own default stream: a sync of another
//! thread's proves nothing of it (the packs' `[completion] per_thread` and
//! `null_is_per_thread`).

use bthost::calls::read_calls;
use bthost::registry::{Registry, SearchPaths};
use bthost::report::gather::{Gather, State};
use bthost_plugin_api::{Phase, Value};
use bthost_tests::*;

/// A record line (printf format, log format 2: id, tid, exit time, duration, fields) of
/// `function`'s call, its fields by name (0 where not given; a dim3 takes two).
fn line(
    built: &bthost::compose::Built,
    function: &str,
    tid: u32,
    exit: u64,
    fields: &[(&str, u64)],
) -> String {
    let id = record_id(built, function, Phase::Call);
    let spec = built.schema.records.iter().find(|r| r.id == id).unwrap();
    let mut l = format!("{id:x} {tid:x} {exit:x} 10");
    for f in &spec.fields {
        let v = fields.iter().find(|(n, _)| *n == f.name).map_or(0, |x| x.1);
        for _ in 0..f.ty.slots() {
            l.push_str(&format!(" {v:x}"));
        }
    }
    l.push('\n');
    l
}

/// One process (0x64), threads 0x65 and 0x66: a communicator of one rank, an AllReduce on
/// thread 0x65's default stream (hipStreamPerThread), thread 0x66 syncing its own default
/// stream both ways, then, with `proven`, thread 0x65 syncing its own (`_spt`, stream 0).
fn write_log(name: &str, proven: bool) -> std::path::PathBuf {
    let built = hip_rccl_built();
    let mut log = String::from("Attaching 9 probes...\n");
    log.push_str(&built.schema.to_text());
    log.push_str("T 64 65 worker\nT 64 66 other\n");
    let mut t = 0x1000;
    let mut next = || {
        t += 0x100;
        t
    };
    log.push_str(&line(
        &built,
        "ncclCommInitRank",
        0x65,
        next(),
        &[("comm", 0xc0c0), ("nranks", 1), ("uniqueId", 0xabcdef)],
    ));
    log.push_str(&line(
        &built,
        "ncclAllReduce",
        0x65,
        next(),
        &[
            ("count", 1024),
            ("datatype", 7),
            ("comm", 0xc0c0),
            ("stream", 2),
        ],
    ));
    log.push_str(&line(
        &built,
        "hipStreamSynchronize",
        0x66,
        next(),
        &[("stream", 2)],
    ));
    log.push_str(&line(
        &built,
        "hipStreamSynchronize_spt",
        0x66,
        next(),
        &[("stream", 0)],
    ));
    log.push_str(&line(&built, "hipMemcpy_spt", 0x66, next(), &[]));
    log.push_str(&line(
        &built,
        "hipStreamQuery",
        0x66,
        next(),
        &[("stream", 0x5555_0000)],
    ));
    if proven {
        log.push_str(&line(
            &built,
            "hipStreamSynchronize_spt",
            0x65,
            next(),
            &[("stream", 0)],
        ));
    }
    let path = scratch(name).join("run.log");
    std::fs::write(&path, log).unwrap();
    path
}

fn registry() -> Registry {
    Registry::discover(&SearchPaths::standard(&[]), true)
}

#[test]
fn special_streams_read_by_name_and_ordinary_ones_as_handles() {
    let log = write_log("special-streams-names", false);
    let reg = registry();
    let mut events = Vec::new();
    let (_, diag, _) =
        bthost::calls::decode_log(&reg, &log, None, |_, evs| events.append(evs)).unwrap();
    assert!(diag.is_empty(), "{diag}");
    let stream = |name: &str, n: usize| {
        events
            .iter()
            .filter(|e| e.name.as_str() == name)
            .nth(n)
            .and_then(|e| e.arg("stream").cloned())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let named = |v: &Value| match v {
        Value::Enum { raw, name } => Some((name.to_string(), *raw)),
        _ => None,
    };
    assert_eq!(
        named(&stream("hipStreamSynchronize", 0)),
        Some(("hipStreamPerThread".into(), 2))
    );
    assert_eq!(
        named(&stream("hipStreamSynchronize_spt", 0)),
        Some(("hipStreamPerThread".into(), 0)),
        "0 in an _spt call is the thread's default stream"
    );
    assert_eq!(
        named(&stream("ncclAllReduce", 0)),
        Some(("hipStreamPerThread".into(), 2))
    );
    assert_eq!(stream("hipStreamQuery", 0), Value::Hex(0x5555_0000));
    // The link keeps the handle's value.
    let sync = events
        .iter()
        .find(|e| e.name.as_str() == "hipStreamSynchronize")
        .unwrap();
    assert_eq!(sync.link("stream"), Some(2));

    let out = log.parent().unwrap().join("out");
    bthost_convert(&log, &out, &[]);
    let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
    for want in [
        "hipStreamSynchronize(stream=hipStreamPerThread(2)) = hipSuccess(0)\n",
        "hipStreamSynchronize_spt(stream=hipStreamPerThread(0)) = hipSuccess(0)\n",
        "hipStreamQuery(stream=0x55550000) = hipSuccess(0)\n",
        "comm=0xc0c0, stream=hipStreamPerThread(2), caller=code:0x0, seq=1",
    ] {
        assert!(txt.contains(want), "log.txt lacks {want:?}:\n{txt}");
    }
    // The device track of the AllReduce is thread 0x65's default stream, named so.
    let traces: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pftrace"))
        .collect();
    assert!(!traces.is_empty());
    for t in &traces {
        let bytes = std::fs::read(t).unwrap();
        assert!(
            bytes
                .windows(b"default stream of thread 101 (device, inferred)".len())
                .any(|w| w == b"default stream of thread 101 (device, inferred)"),
            "{}: no track for thread 0x65's default stream",
            t.display()
        );
    }
}

#[test]
fn a_threads_default_stream_is_proven_by_that_thread_only() {
    let reg = registry();
    let gather = |log: &std::path::Path| {
        let g = Gather::new(
            bthost::report::specs(&reg),
            bthost::report::completion_specs(&reg),
        );
        let (read, g) = read_calls(&reg, log, 0, g, 1).expect("the log reads");
        assert!(read.diag.is_empty(), "{}", read.diag);
        assert_eq!(g.groups.len(), 1);
        let m = &g.groups.values().next().unwrap().members[&0];
        (m.last.desc.clone(), m.last.state.clone())
    };
    // Thread 0x66's syncs of hipStreamPerThread, of stream 0 in an _spt call and its
    // synchronous _spt copy are all on its own default stream, not on 0x65's.
    let pending = write_log("special-streams-pending", false);
    let (desc, state) = gather(&pending);
    assert_eq!(state, State::Pending, "{desc}");
    assert!(desc.ends_with(" on stream hipStreamPerThread(2)"), "{desc}");
    let o = bthost(&["report", pending.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("on stream hipStreamPerThread(2)"),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // 0x65's own sync of its default stream proves it.
    let (_, state) = gather(&write_log("special-streams-proven", true));
    assert!(
        matches!(&state, State::Done { by, .. } if by == "hipStreamSynchronize_spt"),
        "{state:?}"
    );
}
