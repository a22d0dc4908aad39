//! `convert --jobs N` changes where the work runs, not what it writes: one thread (`--jobs 1`:
//! decoding, then the text log, then the traces) and the default (decoding beside the call
//! model, the text log beside the traces) give the same bytes in every output, in memory and
//! with the calls spilled to sorted runs; several logs on one timeline too. The outputs'
//! direct I/O (the default) and `--buffered` writes give the same bytes as well.

use std::path::Path;

use bthost_tests::*;

/// Every output's name and bytes.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

fn assert_same(a: &Path, b: &Path) {
    let (a, b) = (outputs(a), outputs(b));
    assert_eq!(
        a.iter().map(|o| &o.0).collect::<Vec<_>>(),
        b.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    assert!(a.len() >= 2, "a text log and traces");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name} differs between the two conversions ({} vs {} bytes)",
            x.len(),
            y.len()
        );
    }
}

#[test]
fn one_job_and_the_default_write_the_same_bytes() {
    let dir = scratch("convert-jobs");
    let log = dir.join("gen.log");
    generate_log(&log, 2 << 20);
    for (name, extra) in [("mem", &[][..]), ("spill", &["--memory", "1"][..])] {
        let one = dir.join(format!("{name}-1"));
        let many = dir.join(format!("{name}-default"));
        let mut args = vec!["--jobs", "1"];
        args.extend_from_slice(extra);
        bthost_convert(&log, &one, &args);
        bthost_convert(&log, &many, extra);
        assert_same(&one, &many);
        // Through the page cache: the same bytes as with direct I/O (the default).
        let buffered = dir.join(format!("{name}-buffered"));
        let mut args = vec!["--buffered"];
        args.extend_from_slice(extra);
        bthost_convert(&log, &buffered, &args);
        assert_same(&buffered, &many);
    }
}

#[test]
fn several_logs_give_the_same_bytes_with_one_job() {
    let dir = scratch("convert-jobs-logs");
    let spec = JobSpec {
        nodes: 3,
        ranks_per_node: 2,
        collectives: 40,
        skip: Some((3, 39)),
        asynchronous: false,
    };
    let logs = generate_job(&dir, &spec);
    let one = dir.join("one");
    let many = dir.join("many");
    let mut args: Vec<&str> = vec!["convert"];
    args.extend(logs.iter().map(|l| l.to_str().unwrap()));
    let mut a = args.clone();
    a.extend(["-o", one.to_str().unwrap(), "--jobs", "1"]);
    bthost_ok_stderr(&a);
    let mut b = args;
    b.extend(["-o", many.to_str().unwrap(), "--jobs", "2"]);
    bthost_ok_stderr(&b);
    assert_same(&one, &many);
}
