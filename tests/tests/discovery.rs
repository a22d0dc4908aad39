//! Where packs are found, in which order, and what is said of the ones not used: the
//! `$BTHOST_PACK_PATH` folders, `--pack-path` first, a pack of the same name shadowing a later
//! one (reported), and the source tree's packs/ when bthost runs from target/.

use std::process::Command;

use bthost_tests::*;

fn packs_with(args: &[&str], env: Option<&str>) -> String {
    let mut c = Command::new(bthost_bin());
    c.arg("packs").args(args);
    if let Some(v) = env {
        c.env("BTHOST_PACK_PATH", v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn packs_come_from_the_tree_the_env_and_the_command_line() {
    let fixtures = root().join("tests/fixtures/packs");
    let out = packs_with(&[], None);
    for p in ["hip 0.1.0", "rccl 0.1.0", "hsa 0.1.0"] {
        assert!(out.contains(p), "{out}");
    }
    assert!(!out.contains("libcdemo"), "{out}");
    let out = packs_with(&[], Some(fixtures.to_str().unwrap()));
    assert!(
        out.contains("libcdemo 0.1.0")
            && out.contains("libcnest 0.1.0")
            && out.contains("hip 0.1.0"),
        "{out}"
    );
}

#[test]
fn an_earlier_pack_shadows_a_later_one_and_it_is_said() {
    let dir = scratch("shadow");
    let mine = dir.join("hip");
    std::fs::create_dir_all(&mine).unwrap();
    let manifest = std::fs::read_to_string(root().join("packs/hip/pack.toml")).unwrap();
    std::fs::write(
        mine.join("pack.toml"),
        manifest.replace("version = \"0.1.0\"", "version = \"0.1.1\""),
    )
    .unwrap();
    let out = packs_with(&["--pack-path", dir.to_str().unwrap()], None);
    assert!(out.contains("hip 0.1.1"), "{out}");
    let repo_hip = root().join("packs/hip");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("skipped {}", repo_hip.display())))
        .unwrap_or_else(|| panic!("the shadowed pack is not reported:\n{out}"));
    assert!(
        line.contains(&format!("pack hip is shadowed by {}", mine.display())),
        "{line}"
    );
    // The hip plugin was built for 0.1.0: it does not decode a 0.1.1 pack, and says so.
    assert!(
        out.contains("does not match the pack's version 0.1.1"),
        "{out}"
    );
}
