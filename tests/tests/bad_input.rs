//! Bad input gets a clear error naming the file, the line and what was expected: unknown
//! packs, a bpftrace version no variant supports, unsafe names and fragments in a pack, an
//! untrusted pack folder when run as root, and logs from another script.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bthost::compose::schema::Schema;
use bthost_tests::*;
use semver::Version;

fn stderr_of(args: &[&str]) -> (i32, String) {
    let o = bthost(args);
    let mut s = String::from_utf8_lossy(&o.stderr).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stdout));
    (o.status.code().unwrap_or(-1), s)
}

/// `bthost build --pack-path dir --packs pack -o /dev/null`: (exit code, stderr and stdout).
fn build_from(dir: &Path, pack: &str) -> (i32, String) {
    stderr_of(&[
        "build",
        "--pack-path",
        dir.to_str().unwrap(),
        "--packs",
        pack,
        "-o",
        "/dev/null",
    ])
}

const GOOD_PACK: &str = r#"[pack]
name = "NAME"
version = "0.1.0"

[library]
soname = "libc.so.6"

[[variant]]
bpftrace = ">=0.17.0, <0.30.0"

[[probe]]
function = "getpid"
ret = "i32"
"#;

/// Writes a pack folder `dir/name` whose manifest is GOOD_PACK with `edit` applied.
fn write_pack(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("pack.toml"), edit(GOOD_PACK.replace("NAME", name))).unwrap();
    p
}

#[test]
fn unknown_pack_lists_the_known_ones() {
    let (code, err) = stderr_of(&["build", "--packs", "nosuch", "-o", "/dev/null"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown pack \"nosuch\"; known packs: cuda, hip, hsa, nccl, rccl"),
        "{err}"
    );
}

#[test]
fn no_variant_for_the_version_says_which_are_supported() {
    let (code, err) = stderr_of(&[
        "build",
        "--packs",
        "hip",
        "--bpftrace",
        "0.10.0",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("pack hip 0.1.0 has no variant for bpftrace 0.10.0; it supports \">=0.17.0, <0.23.0\", \">=0.23.0, <0.24.0\", \">=0.24.0, <0.27.0\", \">=0.27.0, <0.28.0\""),
        "{err}"
    );
    let (_, err) = stderr_of(&[
        "build",
        "--packs",
        "hip",
        "--bpftrace",
        "zero",
        "-o",
        "/dev/null",
    ]);
    assert!(
        err.contains("--bpftrace \"zero\": expected auto or a version like 0.17.0"),
        "{err}"
    );
}

#[test]
fn unsafe_or_wrong_manifests_are_refused_with_file_and_line() {
    let dir = scratch("bad-manifests");
    // (pack, (text replaced in GOOD_PACK, replacement), expected message)
    let cases: Vec<(&str, (&str, &str), &str)> = vec![
        (
            "inject",
            ("function = \"getpid\"", "function = \"getpid { system(\\\"id\\\") } uprobe:/bin/sh:main\""),
            "pack.toml:12: invalid function name \"getpid { system(\\\"id\\\") } uprobe:/bin/sh:main\": only ASCII letters, digits and '_' are allowed",
        ),
        (
            "badarg",
            ("ret = \"i32\"", "args = [{ name = \"a);\", type = \"i32\" }]\nret = \"i32\""),
            "pack.toml:13: invalid name \"a);\"",
        ),
        (
            "badtype",
            ("ret = \"i32\"", "args = [{ name = \"x\", type = \"float\" }]"),
            "pack.toml:13: unknown type \"float\"; expected one of i8, u8",
        ),
        (
            "unknownkey",
            ("ret = \"i32\"", "retval = \"i32\""),
            "pack.toml:13: unknown field `retval`",
        ),
        (
            "norange",
            ("bpftrace = \">=0.17.0, <0.30.0\"", "bpftrace = \"seventeen\""),
            "pack.toml:9: bpftrace range \"seventeen\" is not a semver range",
        ),
        (
            "badlink",
            ("ret = \"i32\"", "args = [{ name = \"x\", type = \"ptr\", link = \"stream\" }]"),
            "pack.toml:13: link key \"stream\" is not declared in [pack] links = []",
        ),
        (
            "dim3ret",
            ("ret = \"i32\"", "ret = \"dim3\""),
            "pack.toml:13: a return value cannot be of type dim3",
        ),
        (
            "retkey",
            ("ret = \"i32\"", "ret = { type = \"i32\", enums = \"E\" }"),
            "pack.toml:13: `ret`: expected \"none\", a type like \"i32\", or a table with exactly `type`",
        ),
        (
            "twice",
            ("ret = \"i32\"", "ret = \"i32\"\n\n[[probe]]\nfunction = \"getpid\""),
            "pack.toml:16: probe getpid is declared twice (several probes of one function each need `library = \"RANGE\"`",
        ),
        (
            "libnover",
            ("ret = \"i32\"", "ret = \"i32\"\nlibrary = \">=2\""),
            "pack.toml:14: `library = \"RANGE\"` needs [library] version_from",
        ),
        (
            "boolenum",
            ("ret = \"i32\"", "args = [{ name = \"x\", type = \"bool\", enum = \"E\" }]\nret = \"i32\"\n\n[enums.E]\n0 = \"zero\""),
            "pack.toml:13: an enum needs an integer type (or ptr, to name special handles), not bool",
        ),
        (
            "nullboth",
            ("ret = \"i32\"", "ret = \"i32\"\n\n[completion]\nnull = [1]\nper_thread = [2, 1]"),
            "pack.toml:17: [completion] queue value 1 is in both `null` and `per_thread`",
        ),
        (
            "sptcreate",
            ("ret = \"i32\"", "args = [{ name = \"q\", type = \"ptr\", out = true }]\nret = \"i32\"\n\n[[completion.rule]]\ndoes = \"create\"\ncalls = [\"getpid\"]\nqueue = \"q\"\nnull_is_per_thread = true"),
            "pack.toml:17: [[completion.rule]] does = \"create\" takes no `null_is_per_thread`",
        ),
        (
            "sptmarker",
            ("ret = \"i32\"", "args = [{ name = \"e\", type = \"ptr\" }]\nret = \"i32\"\n\n[[completion.rule]]\ndoes = \"wait\"\ncalls = [\"getpid\"]\nmarker = \"e\"\nnull_is_per_thread = true"),
            "pack.toml:17: [[completion.rule]] does = \"wait\" with `null_is_per_thread` takes a `queue` (or none)",
        ),
        (
            "badsource",
            ("soname = \"libc.so.6\"", "soname = \"libc.so.6\"\nversion_from = [\"call:gnu_get_libc_version\"]"),
            "pack.toml:7: version source \"call:gnu_get_libc_version\": expected \"file\"",
        ),
        (
            "siteptr",
            ("ret = \"i32\"", "args = [{ name = \"caller\", type = \"ptr\", from = \"return_address\" }]\nret = \"i32\""),
            "pack.toml:13: `from = \"return_address\"` takes `type = \"code\"`, and no `out`, `index` or `capture`",
        ),
        (
            "sitename",
            ("ret = \"i32\"", "args = [{ name = \"caller\", type = \"code\", from = \"return_addr\" }]\nret = \"i32\""),
            "pack.toml:13: `from = \"return_addr\"`: expected a fragment's scratch variable like \"$grid\", or \"return_address\" (the call site)",
        ),
    ];
    for (name, (from, to), want) in &cases {
        write_pack(&dir, name, |s| s.replace(from, to));
        let (code, err) = build_from(&dir, name);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(want), "{name}: wanted {want:?} in:\n{err}");
        assert!(err.contains(&format!("unknown pack \"{name}\"")), "{err}");
    }
}

#[test]
fn unsafe_fragments_are_refused_with_file_and_line() {
    let dir = scratch("bad-fragment");
    let p = write_pack(&dir, "frag", |s| {
        s.replace("<0.30.0\"", "<0.30.0\"\nfragments = [\"evil.bt\"]")
    });
    std::fs::write(
        p.join("evil.bt"),
        "// evil\n@entry getpid {\n    $x = 1;\n    system(\"id\");\n}\n",
    )
    .unwrap();
    let (code, err) = build_from(&dir, "frag");
    assert_eq!(code, 2);
    assert!(
        err.contains("evil.bt:4: `system` is not allowed in a fragment"),
        "{err}"
    );

    std::fs::write(
        p.join("evil.bt"),
        "@entry getpid {\n}\n}\nBEGIN { system(\"id\") }\n",
    )
    .unwrap();
    let (_, err) = build_from(&dir, "frag");
    assert!(
        err.contains("evil.bt:3: expected a section header"),
        "{err}"
    );

    let p2 = write_pack(&dir, "escape", |s| {
        s.replace("<0.30.0\"", "<0.30.0\"\nfragments = [\"../frag/evil.bt\"]")
    });
    let (_, err) = build_from(&dir, "escape");
    assert!(
        err.contains("must be a path inside the pack folder"),
        "{err} ({})",
        p2.display()
    );
}

#[test]
fn untrusted_pack_folders_are_refused_as_root() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("untrusted");
    let p = write_pack(&dir, "loose", |s| s);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, err) = build_from(&dir, "loose");
    assert_eq!(code, 2);
    assert!(
        err.contains("not trusted as root") && err.contains("writable by everyone"),
        "{err}"
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("ok.bt");
    let (code, err) = stderr_of(&[
        "build",
        "--pack-path",
        dir.to_str().unwrap(),
        "--packs",
        "loose",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    // A file others can write, in a folder only root can: refused too (it reaches the script).
    let manifest = p.join("pack.toml");
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = build_from(&dir, "loose");
    assert_eq!(code, 2);
    assert!(
        err.contains("not trusted as root")
            && err.contains(&format!("{} is writable by everyone", manifest.display())),
        "{err}"
    );
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn hip_schema(v: &str) -> String {
    let dir = scratch(&format!("schema-{v}"));
    let script = dir.join("s.bt");
    bthost_ok(&[
        "build",
        "--packs",
        "hip",
        "--bpftrace",
        v,
        "-o",
        script.to_str().unwrap(),
    ]);
    std::fs::read_to_string(dir.join("s.schema")).unwrap()
}

#[test]
fn logs_from_elsewhere_are_refused_with_the_reason() {
    require_hip();
    let dir = scratch("foreign-logs");
    let convert = |name: &str, text: &str, extra: &[&str]| {
        let log = dir.join(name);
        std::fs::write(&log, text).unwrap();
        let mut args = vec!["convert", log.to_str().unwrap(), "-o"];
        let out = dir.join(format!("{name}.d"));
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        stderr_of(&args)
    };

    let (code, err) = convert("plain.log", "Attaching 3 probes...\nhello\n1 2 3\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("plain.log:3: a record before any #bthost header: this log was not written by a script from `bthost build`"), "{err}");

    let (code, err) = convert("empty.log", "Attaching 3 probes...\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("empty.log:1: no #bthost header"), "{err}");

    // A log from the 0.17 script, given the 0.24.2 script's schema.
    let s17 = hip_schema("0.17.0");
    let s24 = hip_schema("0.24.2");
    let other = dir.join("other.schema");
    std::fs::write(&other, &s24).unwrap();
    let (code, err) = convert(
        "mismatch.log",
        &format!("{s17}T 1 1 x\n"),
        &["--schema", other.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("this log is from another script: its schema is"),
        "{err}"
    );
    let mine = dir.join("mine.schema");
    std::fs::write(&mine, &s17).unwrap();
    let (code, err) = convert(
        "match.log",
        &format!("{s17}T 1 1 x\n"),
        &["--schema", mine.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");

    let damaged = s17.replacen("hipGetDeviceCount", "hipGetDeviceCounts", 1);
    let (code, err) = convert("damaged.log", &damaged, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("the header is damaged or was edited"), "{err}");

    let foreign = Schema {
        bpftrace: Version::new(0, 17, 0),
        storage: Default::default(),
        packs: vec![("mpi".into(), Version::new(0, 1, 0))],
        records: vec![],
    };
    let (code, err) = convert("mpi.log", &foreign.to_text(), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "mpi.log:1: the log was written with pack mpi 0.1.0, which is not installed here"
        ),
        "{err}"
    );

    let newer = Schema {
        bpftrace: Version::new(0, 17, 0),
        storage: Default::default(),
        packs: vec![("hip".into(), Version::new(1, 0, 0))],
        records: vec![],
    };
    let (code, err) = convert("newer.log", &newer.to_text(), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("written with pack hip 1.0.0, but the installed pack is 0.1.0 (incompatible)"),
        "{err}"
    );

    let (code, err) = convert(
        "v4.log",
        "#bthost 4 0000000000000000 bpftrace=0.17.0 hip@0.1.0\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("v4.log:1: log format 4, but this bthost reads formats 1 to 3"),
        "{err}"
    );
}

#[test]
fn damaged_lines_are_counted_and_the_rest_kept() {
    require_hip();
    let dir = scratch("damaged-lines");
    let s17 = hip_schema("0.17.0");
    // Record 3 is hipSetDevice (call): tid ts dur deviceId ret.
    assert!(
        s17.contains("\n#S 3 hip hipSetDevice call deviceId:i32 ret:i32"),
        "{s17}"
    );
    let log = format!(
        "Attaching 26 probes...\n{s17}T 10 11 app\n3 11 100 5 0 0\nLost 7 events\n3 11 200 5 zz 0\n99 11 300 1\n3 11 400 5\nBAD\n3 11 500 5 1 0\n3 11 600 5 1"
    );
    let log = log
        .replace("BAD", "\u{0}")
        .into_bytes()
        .into_iter()
        .map(|b| if b == 0 { 0xff } else { b })
        .collect::<Vec<u8>>();
    let path = dir.join("damaged.log");
    std::fs::write(&path, &log).unwrap();
    let out = dir.join("out");
    let (code, err) = stderr_of(&[
        "convert",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let n = s17.lines().count() as u64;
    for want in [
        format!(
            "damaged.log:{}: warning: bpftrace lost 7 events here",
            n + 4
        ),
        format!(
            "damaged.log:{}: warning: skipped: record field \"zz\" is not hex",
            n + 5
        ),
        format!(
            "damaged.log:{}: warning: record id 99 is not in the schema",
            n + 6
        ),
        format!(
            "damaged.log:{}: warning: hipSetDevice call: 3 numbers where the schema has 5",
            n + 7
        ),
        format!(
            "damaged.log:{}: warning: the last line has no newline",
            n + 10
        ),
        "7 events LOST by bpftrace".to_string(),
    ] {
        assert!(err.contains(&want), "wanted {want:?} in:\n{err}");
    }
    let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert_eq!(txt.matches("hipSetDevice(deviceId=").count(), 2, "{txt}");
    assert!(txt.contains("-- thread 17 (app) --"), "{txt}");
}

#[test]
fn untrusted_plugins_are_not_loaded_as_root() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("untrusted-plugin");
    let loose = dir.join("plugins");
    std::fs::create_dir_all(&loose).unwrap();
    std::fs::copy(
        out_dir().join("libbthost_pack_hip.so"),
        loose.join("libbthost_pack_hip.so"),
    )
    .unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = std::process::Command::new(bthost_bin())
        .arg("packs")
        .env("BTHOST_PLUGIN_PATH", &loose)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains(loose.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("not trusted as root") && line.contains("writable by everyone"),
        "{line}"
    );
}
