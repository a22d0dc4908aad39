//! End to end on NVIDIA's real CUDA runtime and NCCL (libcudart.so.12 12.9 and libnccl.so.2
//! 2.32 from PyPI's wheels), with the cuda and nccl packs: `bthost record` on every bpftrace
//! here traces a C program built on them, and `convert` gives a text log and traces whose
//! calls carry cudaError_t / ncclResult_t names and link by stream (across the two packs:
//! NCCL's collectives name the CUDA stream they run on), by event and by communicator.
//! With no GPU the CUDA calls fail (cudaErrorInsufficientDriver) and every probe fires.

use std::path::Path;

use bthost_tests::*;

#[test]
fn traces_the_real_cuda_runtime_and_nccl_on_every_bpftrace() {
    if skip_root_tests() {
        return;
    }
    let nv = nvidia_dir();
    let cudart = nv.join("nvidia/cuda_runtime/lib/libcudart.so.12");
    let nccl = nv.join("nvidia/nccl/lib/libnccl.so.2");
    let dir = scratch("e2e_nvidia");
    let rpath = format!(
        "-Wl,-rpath,{}:{}",
        cudart.parent().unwrap().display(),
        nccl.parent().unwrap().display()
    );
    let prog = compile_workload(
        "nvidia_calls",
        &dir,
        &[
            &format!("-L{}", cudart.parent().unwrap().display()),
            &format!("-L{}", nccl.parent().unwrap().display()),
            "-l:libcudart.so.12",
            "-l:libnccl.so.2",
            &rpath,
        ],
    );
    for (bin, version) in available_bpftraces() {
        traces(&dir.join(version.to_string()), &bin, &prog, &cudart, &nccl);
    }
}

fn traces(dir: &Path, bpftrace: &Path, prog: &Path, cudart: &Path, nccl: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("run.log");
    let (cuda, nccl) = (
        format!("cuda={}", cudart.display()),
        format!("nccl={}", nccl.display()),
    );
    let o = bthost_record(&[
        "--packs",
        "cuda,nccl",
        "--bpftrace-bin",
        bpftrace.to_str().unwrap(),
        "--lib",
        &cuda,
        "--lib",
        &nccl,
        "-o",
        log.to_str().unwrap(),
        "--",
        prog.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "record: {err}");
    // The nccl variant was picked knowing the library's version, read from its text.
    assert!(
        err.contains("bthost: pack nccl: variant ")
            && err
                .contains("libnccl.so.2 is 2.32.3 (from the text \"NCCL version 2.32.3+cuda12.9\""),
        "{err}"
    );
    // What the program saw, call by call: `name code`.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let results: Vec<(&str, i64)> = stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            Some((w.next()?, w.next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(results.len(), 15, "{stdout}");

    let out = dir.join("out");
    bthost_convert(&log, &out, &[]);
    let text = std::fs::read_to_string(out.join("log.txt")).unwrap();
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(") && l.contains(") = "))
        .collect();
    assert_eq!(calls.len(), results.len(), "{text}");
    for ((name, code), line) in results.iter().zip(&calls) {
        assert!(line.contains(&format!(" {name}(")), "{name} vs {line}");
        let want = match (*name, *code) {
            (n, 35) if n.starts_with("cuda") => "= cudaErrorInsufficientDriver(35)".to_string(),
            (n, 0) if n.starts_with("nccl") => "= ncclSuccess(0)".to_string(),
            (n, 4) if n.starts_with("nccl") => "= ncclInvalidArgument(4)".to_string(),
            other => panic!("the program saw {other:?}"),
        };
        assert!(line.contains(&want), "{line}: want {want}");
    }
    // Output arguments, stack arguments (the 7th: the collective's stream), enum names, and
    // the host function symbolized from the kept memory map.
    let version = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ncclGetVersion 0 "))
        .unwrap();
    assert!(
        text.contains(&format!("ncclGetVersion(version={version})")),
        "{text}"
    );
    // ... and nccl's decoder (rccl's, built into bthost) numbers the collectives on the
    // communicator and sizes them.
    // Each collective's call site (`caller`, the return address read at entry), symbolized as
    // main's line that calls it.
    let src = std::fs::read_to_string(root().join("tests/workloads/nvidia_calls.c")).unwrap();
    let line_of = |call: &str| {
        1 + src
            .lines()
            .position(|l| l.contains(call))
            .unwrap_or_else(|| panic!("no {call} in nvidia_calls.c"))
    };
    for (call, fields) in [
        ("(int)ncclAllReduce(", "ncclAllReduce(sendbuff=0x0, recvbuff=0x0, count=1024, datatype=ncclFloat32(7), op=ncclSum(0), comm=0x0, stream=0x5151, caller=main+0x"),
        ("(int)ncclBroadcast(", "ncclBroadcast(sendbuff=0x0, recvbuff=0x0, count=1024, datatype=ncclFloat32(7), root=0, comm=0x0, stream=0x5151, caller=main+0x"),
    ] {
        let l = text
            .lines()
            .find(|l| l.contains(fields))
            .unwrap_or_else(|| panic!("no {fields}:\n{text}"));
        assert!(
            l.contains(&format!("/tests/workloads/nvidia_calls.c:{} (0x", line_of(call))),
            "{l}"
        );
    }
    assert!(
        text.contains(", seq=1, bytes=4096) = ncclInvalidArgument(4)"),
        "{text}"
    );
    assert!(
        text.contains(", seq=2, bytes=4096) = ncclInvalidArgument(4)"),
        "{text}"
    );
    assert!(
        text.contains("kind=cudaMemcpyDeviceToDevice(3), stream=0x5151)"),
        "{text}"
    );
    assert!(
        text.contains("cudaLaunchHostFunc(stream=0x5151, fn=host_fn+0x0 at "),
        "{text}"
    );
    assert!(
        text.contains("cudaStreamAddCallback(stream=0x5151, callback=stream_cb+0x0 at "),
        "{text}"
    );

    // Links, read back with Perfetto's own schema.
    let flows = |key: &str| -> Vec<(String, String)> {
        let t = check_trace(&out.join(format!("trace_{key}.pftrace")));
        t["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_str().unwrap().into(), f[2].as_str().unwrap().into()))
            .collect()
    };
    let stream = flows("stream");
    let on_stream = [
        "cudaMemcpyAsync",
        "cudaLaunchHostFunc",
        "cudaStreamAddCallback",
        "cudaEventRecord",
        "cudaStreamWaitEvent",
        "cudaStreamSynchronize",
        "ncclAllReduce",
        "ncclBroadcast",
    ];
    let chain: Vec<(String, String)> = on_stream
        .windows(2)
        .map(|w| (w[0].to_string(), w[1].to_string()))
        .collect();
    for link in &chain {
        assert!(
            stream.contains(link),
            "stream flows {stream:?} lack {link:?}"
        );
    }
    assert!(flows("event").contains(&("cudaEventRecord".into(), "cudaStreamWaitEvent".into())));
    let comm = flows("comm");
    assert!(
        comm.contains(&("ncclAllReduce".into(), "ncclBroadcast".into())),
        "{comm:?}"
    );
    assert!(
        comm.contains(&("ncclBroadcast".into(), "ncclCommCount".into())),
        "{comm:?}"
    );
}
