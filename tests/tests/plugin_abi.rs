//! A plugin built against another plugin ABI is refused with a short message naming both
//! versions, and the rest of the packs still load. The mismatched plugins are built here, from
//! a copy of plugin-api with another version (0.2.0) or a grown layout (0.1.99, one more field
//! in PluginInfo), so the test exercises real libraries, not a mock.

use std::path::{Path, PathBuf};
use std::process::Command;

use bthost_tests::*;

const PLUGIN_SRC: &str = r#"
#![allow(non_local_definitions)]
use abi_stable::std_types::{RResult, RString, RVec};
use bthost_plugin_api::{abi_stable::sabi_trait::TD_Opaque, Decoder, DecoderBox, DecoderConfig, Decoder_TO, Event, PluginInfo, Record, ABI_VERSION};

struct Nop;
impl Decoder for Nop {
    fn on_record(&mut self, _r: &Record<'_>, _o: &mut RVec<Event>) -> RResult<(), RString> { RResult::ROk(()) }
    fn finish(&mut self, _o: &mut RVec<Event>) {}
}
pub extern "C" fn info() -> PluginInfo {
    PluginInfo { pack: "PACK".into(), pack_version: "0.1.0".into(), abi_version: ABI_VERSION.into(), links: RVec::new() EXTRA }
}
pub extern "C" fn new_decoder(_c: &DecoderConfig) -> RResult<DecoderBox, RString> {
    RResult::ROk(Decoder_TO::from_value(Nop, TD_Opaque))
}
bthost_plugin_api::export_pack_plugin!(info, new_decoder);
"#;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Builds a plugin for pack `pack` against a plugin-api copy of `api_version`, with
/// `extra_field` appended to PluginInfo (to change the layout); returns the .so.
fn build_plugin(base: &Path, pack: &str, api_version: &str, extra_field: bool) -> PathBuf {
    let ws = base.join(pack);
    let api = ws.join("plugin-api");
    copy_dir(&root().join("plugin-api/src"), &api.join("src"));
    let manifest = format!(
        "[package]\nname = \"bthost-plugin-api\"\nversion = \"{api_version}\"\nedition = \"2021\"\n\n[dependencies]\nabi_stable = \"0.11\"\n"
    );
    std::fs::write(api.join("Cargo.toml"), manifest).unwrap();
    if extra_field {
        let m = api.join("src/module.rs");
        let text = std::fs::read_to_string(&m).unwrap();
        let grown = text.replace(
            "pub links: RVec<RStr<'static>>,",
            "pub links: RVec<RStr<'static>>,\n    pub extra: u64,",
        );
        assert_ne!(
            text, grown,
            "plugin-api's PluginInfo changed; update this test"
        );
        std::fs::write(&m, grown).unwrap();
    }
    let plugin = ws.join("plugin");
    std::fs::create_dir_all(plugin.join("src")).unwrap();
    std::fs::write(
        plugin.join("Cargo.toml"),
        format!(
            "[package]\nname = \"bthost-pack-{pack}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nabi_stable = \"0.11\"\nbthost-plugin-api = {{ path = \"../plugin-api\" }}\n"
        ),
    )
    .unwrap();
    let src = PLUGIN_SRC
        .replace("PACK", pack)
        .replace(" EXTRA", if extra_field { ", extra: 7" } else { "" });
    std::fs::write(plugin.join("src/lib.rs"), src).unwrap();
    std::fs::write(
        ws.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugin-api\", \"plugin\"]\n",
    )
    .unwrap();
    // The same dependency versions as the workspace, resolved without the network.
    std::fs::copy(root().join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    let target = out_dir().join("abi-test-target");
    let o = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(ws.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "building the {pack} plugin: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    target
        .join("debug")
        .join(format!("libbthost_pack_{pack}.so"))
}

fn pack_dir(base: &Path, pack: &str) {
    let d = base.join("packs").join(pack);
    std::fs::create_dir_all(&d).unwrap();
    let manifest = format!(
        "[pack]\nname = \"{pack}\"\nversion = \"0.1.0\"\n\n[library]\nsoname = \"libc.so.6\"\n\n[[variant]]\nbpftrace = \">=0.17.0, <0.30.0\"\n\n[[probe]]\nfunction = \"getpid\"\nret = \"i32\"\n"
    );
    std::fs::write(d.join("pack.toml"), manifest).unwrap();
}

#[test]
fn plugins_of_another_abi_are_refused_clearly() {
    let base = scratch("plugin-abi");
    let plugins = base.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (pack, version, grown) in [("abinew", "0.2.0", false), ("abigrown", "0.1.99", true)] {
        let so = build_plugin(&base, pack, version, grown);
        std::fs::copy(&so, plugins.join(so.file_name().unwrap())).unwrap();
        pack_dir(&base, pack);
    }
    let run = |verbose: bool| {
        let mut c = Command::new(bthost_bin());
        c.arg("packs")
            .arg("--pack-path")
            .arg(base.join("packs"))
            .env("BTHOST_PLUGIN_PATH", &plugins);
        if verbose {
            c.arg("-v");
        }
        let o = c.output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = run(false);
    let new_line = out
        .lines()
        .find(|l| l.contains("libbthost_pack_abinew.so"))
        .unwrap_or_else(|| panic!("abinew plugin not reported:\n{out}"));
    assert!(
        new_line.ends_with("built for plugin ABI 0.2.0, but this bthost speaks ABI 0.1.0: rebuild the plugin against bthost-plugin-api 0.1.0"),
        "{new_line}"
    );
    let grown_line = out
        .lines()
        .find(|l| l.contains("libbthost_pack_abigrown.so"))
        .unwrap_or_else(|| panic!("abigrown plugin not reported:\n{out}"));
    assert!(
        grown_line.contains("its layout does not match plugin ABI 0.1.0 (it says 0.1.99): differs at PackMod.info.__returns: PluginInfo")
            && grown_line.contains("run with -v"),
        "{grown_line}"
    );
    // Short by default: one line each; abi_stable's full report only with -v.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("skipped")).count(),
        2,
        "{out}"
    );
    // (About 8 lines per pack found: the tree's and the test's.)
    assert!(out.lines().count() < 80, "{out}");
    let verbose = run(true);
    assert!(
        verbose.lines().count() > out.lines().count() + 5,
        "{verbose}"
    );
    // The packs themselves still load, with generic decoding, and hip keeps its own plugin.
    assert!(
        out.contains("abinew 0.1.0") && out.contains("abigrown 0.1.0"),
        "{out}"
    );
    assert!(out.contains("libbthost_pack_hip.so (ABI 0.1.0)"), "{out}");
}
