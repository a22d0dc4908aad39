//! GPU completion times the original tool's way, as the documented example pack
//! (docs/examples/gpu_completion): probes on a program's own launch wrapper and on the
//! completion callback it enqueues, joined by their token. Traced for real; in the Perfetto
//! trace of the `token` key (read with Perfetto's schema) every launch has exactly one flow,
//! to its own completion on the callback's thread.

use bthost_tests::*;

#[test]
fn each_launch_flows_to_its_completion() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("completion");
    let examples = root().join("docs/examples");
    let app = compile_completion_demo(&dir);
    let log = dir.join("gpu.log");
    let launches = 12;
    let lib = format!("gpu_completion={}", app.display());
    let o = bthost_record(&[
        "--pack-path",
        examples.to_str().unwrap(),
        "--packs",
        "gpu_completion",
        "--lib",
        &lib,
        "-o",
        log.to_str().unwrap(),
        "--",
        app.to_str().unwrap(),
        &launches.to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("launched {launches}, completed {launches}")
    );

    let out = dir.join("out");
    bthost_convert(&log, &out, &["--pack-path", examples.to_str().unwrap()]);
    let t = check_trace(&out.join("trace_token.pftrace"));
    let slices = t["slices"].as_array().unwrap();
    let token_of = |name: &str| -> Vec<(i64, i64, i64)> {
        slices
            .iter()
            .filter(|s| s["name"] == name)
            .map(|s| {
                (
                    s["args"]["token"].as_i64().unwrap(),
                    s["ts"].as_i64().unwrap(),
                    s["tid"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let launched = token_of("launch_wrapper");
    let completed = token_of("on_complete");
    assert_eq!(launched.len(), launches);
    assert_eq!(completed.len(), launches);
    // Every token completes once, after its launch, on another thread (the callback's).
    for (token, ts, tid) in &launched {
        let (_, cts, ctid) = completed
            .iter()
            .find(|c| c.0 == *token)
            .unwrap_or_else(|| panic!("token {token} never completed"));
        assert!(cts > ts && ctid != tid, "token {token}");
    }
    // One flow per launch, from the launch to its completion, and no other.
    let flows = t["flows"].as_array().unwrap();
    assert_eq!(flows.len(), launches, "{flows:?}");
    for f in flows {
        assert_eq!(
            (f[0].as_str(), f[2].as_str()),
            (Some("launch_wrapper"), Some("on_complete"))
        );
        assert_ne!(f[1], f[3], "a flow across threads: {f:?}");
    }
}
