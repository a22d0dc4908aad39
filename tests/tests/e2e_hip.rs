//! End to end on the real HIP runtime: `bthost build --packs hip`, real bpftrace with real
//! uprobes on Debian's libamdhip64.so.5 tracing a C program, then decode and convert.
//! With no GPU every call fails, but every probe fires: the test checks decoded calls, their
//! order per thread, their arguments (registers and stack) and their named return codes.

use bthost::calls::decode_log;
use bthost::registry::{Registry, SearchPaths};
use bthost_plugin_api::{Event, EventKind, Value};
use bthost_tests::*;

fn arg<'a>(e: &'a Event, name: &str) -> &'a Value {
    e.arg(name)
        .unwrap_or_else(|| panic!("{} has no argument {name}: {e:?}", e.name))
}

fn enum_name(v: &Value) -> (&str, i64) {
    match v {
        Value::Enum { raw, name } => (name.as_str(), *raw),
        other => panic!("expected an enum value, got {other:?}"),
    }
}

#[test]
fn traces_the_real_hip_runtime_on_every_bpftrace() {
    if skip_root_tests() {
        return;
    }
    require_hip();
    let versions = available_bpftraces();
    assert!(
        versions.len() >= 2,
        "want bpftrace 0.17 and 0.23 (scripts/setup): {versions:?}"
    );
    for (bin, version) in &versions {
        traces_the_real_hip_runtime(bin, version);
    }
}

fn traces_the_real_hip_runtime(bin: &std::path::Path, version: &semver::Version) {
    let dir = scratch(&format!("e2e_hip-{version}"));
    let script = dir.join("bpft.bt");
    let log = dir.join("run.log");
    let bpftrace_bin = bin.to_str().unwrap();
    bthost_ok(&[
        "build",
        "--packs",
        "hip",
        "--bpftrace-bin",
        bpftrace_bin,
        "-o",
        script.to_str().unwrap(),
    ]);
    let schema_text = std::fs::read_to_string(dir.join("bpft.schema")).unwrap();
    assert!(
        schema_text.contains(&format!("bpftrace={version}")),
        "--bpftrace auto asked {bpftrace_bin}"
    );

    let prog = compile_workload("hip_basic", &dir, &["-l:libamdhip64.so.5", "-lpthread"]);
    let maps = dir.join("hip_basic.maps");
    let cmd = format!("BTHOST_DUMP_MAPS={} {}", maps.display(), prog.display());
    let stdout = bpftrace_trace(bin, &script, &log, &cmd);
    let text = std::fs::read_to_string(&log).unwrap();
    let kernel_addr = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kernel 0x"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("the workload did not print its kernel address: {stdout}"));

    // The log starts with the same header the schema file holds.
    let header = schema_text.lines().next().unwrap();
    assert!(
        text.lines().any(|l| l == header),
        "log lacks the header {header}:\n{text}"
    );

    let reg = Registry::discover(&SearchPaths::standard(&[]), true);
    assert!(
        reg.entries["hip"].plugin.is_some(),
        "hip plugin not loaded: {:?}",
        reg.skipped
    );
    let mut events = Vec::new();
    let (stats, diag, _) = decode_log(&reg, &log, None, |_, evs| events.append(evs)).unwrap();
    assert_eq!(diag.count("garbage lines"), 0, "{diag}");
    assert_eq!(diag.count("malformed records"), 0, "{diag}");
    assert_eq!(stats.lost_events, 0);

    // Only the workload's process (the probes are system-wide).
    let workload_pid = events[0].pid;
    events.retain(|e| e.pid == workload_pid);
    let main_tid = events[0].tid;
    let main: Vec<&Event> = events.iter().filter(|e| e.tid == main_tid).collect();
    let worker: Vec<&Event> = events.iter().filter(|e| e.tid != main_tid).collect();
    let names = |v: &[&Event]| {
        v.iter()
            .map(|e| (e.name.as_str().to_string(), e.kind))
            .collect::<Vec<_>>()
    };
    use EventKind::*;
    let expect = |v: &[(&str, EventKind)]| {
        v.iter()
            .map(|(n, k)| (n.to_string(), *k))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&main),
        expect(&[
            ("hipGetDeviceCount", Complete),
            ("hipSetDevice", Complete),
            ("hipGetDevice", Complete),
            ("hipMalloc", Complete),
            ("hipStreamCreate", Complete),
            ("hipMemcpyAsync", Complete),
            ("hipLaunchKernel", Complete),
            ("hipFree", Complete),
        ])
    );
    assert_eq!(
        names(&worker),
        expect(&[
            ("hipSetDevice", Complete),
            ("hipStreamSynchronize", Complete),
            ("hipDeviceSynchronize", Complete),
        ])
    );
    // One process, its pid from the thread lines; time runs forward on each thread.
    assert!(events.iter().all(|e| e.pid == main_tid), "{events:?}");
    for v in [&main, &worker] {
        assert!(v.windows(2).all(|w| w[0].ts + w[0].dur <= w[1].ts), "{v:?}");
    }

    let count = main[0];
    assert_eq!(enum_name(arg(count, "ret")), ("hipErrorNoDevice", 100));
    assert_eq!(arg(count, "count"), &Value::Int(0));
    assert!(count.dur > 0);
    assert_eq!(arg(main[1], "deviceId"), &Value::Int(0));
    assert_eq!(
        enum_name(arg(main[1], "ret")),
        ("hipErrorInvalidDevice", 101)
    );
    assert_eq!(arg(main[3], "size"), &Value::UInt(1 << 20));

    let copy = main[5];
    assert_eq!(arg(copy, "dst"), &Value::Hex(0x7000));
    assert_eq!(arg(copy, "sizeBytes"), &Value::UInt(64));
    assert_eq!(enum_name(arg(copy, "kind")), ("hipMemcpyHostToDevice", 1));
    assert_eq!(copy.link("stream"), Some(0x5eed));

    // hipLaunchKernel: dim3 by value in two registers each; shared memory and stream on the stack.
    let launch = main[6];
    assert_eq!(arg(launch, "function"), &Value::CodeAddr(kernel_addr));
    assert_eq!(arg(launch, "numBlocks"), &Value::Str("64x2x1".into()));
    assert_eq!(arg(launch, "dimBlocks"), &Value::Str("256x1x1".into()));
    assert_eq!(arg(launch, "sharedMemBytes"), &Value::UInt(4096));
    assert_eq!(arg(launch, "stream"), &Value::Hex(0x5eed));
    assert_eq!(launch.link("stream"), Some(0x5eed));

    assert_eq!(arg(worker[0], "deviceId"), &Value::Int(1));
    assert_eq!(
        enum_name(arg(worker[1], "ret")),
        ("hipErrorInvalidDevice", 101)
    );
    // The null stream by its name (the hip pack's `enum` on the stream handle).
    assert_eq!(enum_name(arg(worker[1], "stream")), ("null", 0));
    assert_eq!(worker[1].link("stream"), Some(0));
    // No hipSetDevice succeeded, so no thread has a known device.
    assert!(events.iter().all(|e| e.link("device").is_none()));

    // The CLI writes the per-thread text log, and accepts the log with its own schema file.
    let out_dir = dir.join("out");
    bthost_convert(
        &log,
        &out_dir,
        &["--schema", dir.join("bpft.schema").to_str().unwrap()],
    );
    let txt = std::fs::read_to_string(out_dir.join("log.txt")).unwrap();
    // Offline symbolization: with the process's memory map, the kernel's address is a name.
    let sym_dir = dir.join("sym");
    let maps_arg = format!("{workload_pid}={}", maps.display());
    let err = bthost_convert(&log, &sym_dir, &["--maps", &maps_arg]);
    assert!(
        err.contains("code addresses: 1 symbolized, 0 left as addresses"),
        "{err}"
    );
    let sym_txt = std::fs::read_to_string(sym_dir.join("log.txt")).unwrap();
    // The workload is built with -g: DWARF gives the kernel's file and line too.
    let src = root().join("tests/workloads/hip_basic.c");
    let line = std::fs::read_to_string(&src)
        .unwrap()
        .lines()
        .position(|l| l.contains("void bthost_demo_kernel(void)"))
        .unwrap()
        + 1;
    let want = format!(
        "function=bthost_demo_kernel+0x0 at {}:{line} ({kernel_addr:#x})",
        src.display()
    );
    assert!(sym_txt.contains(&want), "wanted {want:?} in {sym_txt}");
    for want in [
        "hipGetDeviceCount(count=0) = hipErrorNoDevice(100)",
        "hipMemcpyAsync(dst=0x7000, src=0x",
        "kind=hipMemcpyHostToDevice(1), stream=0x5eed) = hipErrorInvalidDevice(101)\n",
        "numBlocks=64x2x1, dimBlocks=256x1x1",
        "hipStreamSynchronize(stream=null(0)) = hipErrorInvalidDevice(101)",
        "hipDeviceSynchronize() = hipErrorInvalidDevice(101)",
    ] {
        assert!(txt.contains(want), "log.txt lacks {want:?}:\n{txt}");
    }
    assert_eq!(txt.matches("-- thread ").count(), 2, "{txt}");
}

/// bpftrace 0.23.0-0.24.1 swap `pid` and `tid` when bpftrace itself runs inside a pid
/// namespace (a container). The 0.23 variant reads ids from curtask, so bpftrace and a workload
/// run under `unshare --pid` still show one process with two threads; a script built for
/// 0.24.2 (plain builtins) on the same bpftrace files the worker's calls under the main
/// thread (its `tid` is the process id), which is why the variants differ.
#[test]
fn ids_are_right_inside_a_pid_namespace_on_0_23() {
    if skip_root_tests() {
        return;
    }
    require_hip();
    let Some((bin, v023)) = available_bpftraces()
        .into_iter()
        .find(|(_, v)| v.major == 0 && v.minor == 23)
    else {
        panic!("no bpftrace 0.23 here: run tests/bpftrace/setup-trixie.sh (scripts/setup does it)");
    };
    let dir = scratch("e2e_hip-pidns");
    let prog = compile_workload("hip_basic", &dir, &["-l:libamdhip64.so.5", "-lpthread"]);
    let reg = Registry::discover(&SearchPaths::standard(&[]), true);
    let _serial = system_wide_lock();
    let mut seen = Vec::new();
    for dialect in [v023.to_string(), "0.24.2".to_string()] {
        let script = dir.join(format!("ns-{dialect}.bt"));
        let log = dir.join(format!("ns-{dialect}.log"));
        bthost_ok(&[
            "build",
            "--packs",
            "hip",
            "--bpftrace",
            &dialect,
            "-o",
            script.to_str().unwrap(),
        ]);
        let o = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(&bin)
            .arg(&script)
            .arg("-o")
            .arg(&log)
            .arg("-c")
            .arg(&prog)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut events = Vec::new();
        decode_log(&reg, &log, None, |_, evs| events.append(evs)).unwrap();
        let calls: Vec<&Event> = events
            .iter()
            .filter(|e| ["hipGetDeviceCount", "hipDeviceSynchronize"].contains(&e.name.as_str()))
            .collect();
        assert_eq!(calls.len(), 2, "{dialect}: {calls:?}"); // one on the main thread, one on the worker
        let (main, worker) = (calls[0], calls[1]);
        seen.push((
            dialect,
            main.pid == worker.pid,
            main.pid == main.tid,
            worker.tid != main.tid,
        ));
    }
    assert_eq!(
        seen[0],
        (v023.to_string(), true, true, true),
        "the 0.23 variant: {seen:?}"
    );
    // Control: plain builtins on 0.23 in a pid namespace merge the two threads into one.
    assert!(
        !seen[1].3,
        "plain pid/tid on 0.23 in a pid namespace: {seen:?}"
    );
}
