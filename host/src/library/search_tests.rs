//! The search for every copy of a pack's library, the job's copy, and nested libraries
//! followed through NEEDED entries: on copies of real ELF files in fake trees under a
//! temporary root (the search's roots are injected; the real /opt is never touched).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::job::{self, JobLoads, Linker, Loaded};
use super::search::{find_all, PyEnv, Search};
use super::{find_nested, LdCache, LibOverrides};
use crate::pack::Pack;

const HIP5: &str = "/lib/x86_64-linux-gnu/libamdhip64.so.5";
const SID: &str = "/var/cache/bthost/sid/usr/lib/x86_64-linux-gnu";

fn pack(name: &str) -> Pack {
    crate::registry::builtin::packs()
        .into_iter()
        .map(|p| p.unwrap())
        .find(|p| p.name == name)
        .unwrap()
}

/// A fresh folder for one test (0755, so that it is trusted as root).
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bthost-search-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A copy (a file of its own) of `from` at `to`, folders made.
fn copy(from: &str, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
    to.to_path_buf()
}

/// A search that looks only under `root`.
fn search_in(root: &Path, ldconfig: &[(&str, &Path)]) -> Search {
    let text: String = ldconfig
        .iter()
        .map(|(n, p)| format!("\t{n} (libc6,x86-64) => {}\n", p.display()))
        .collect();
    Search {
        cache: LdCache::parse(&text),
        rocm_path: None,
        opt: root.join("opt"),
        std_dirs: vec![root.join("usr/lib")],
        python: Vec::new(),
        as_root: false,
    }
}

fn need(p: &str) -> bool {
    if Path::new(p).exists() {
        return true;
    }
    eprintln!("{p} is missing: skipped (the end-to-end tests require it)");
    false
}

#[test]
fn every_copy_is_found_once_in_the_search_order() {
    if !need(HIP5) {
        return;
    }
    let root = tmp("order");
    let ld = copy(HIP5, &root.join("ld/libamdhip64.so.5"));
    std::os::unix::fs::symlink("libamdhip64.so.5", root.join("ld/libamdhip64.so")).unwrap();
    let rp = copy(HIP5, &root.join("rocmpath/lib/libamdhip64.so.6"));
    let r6 = copy(HIP5, &root.join("opt/rocm-6.4.3/lib/libamdhip64.so.6"));
    let r7 = copy(HIP5, &root.join("opt/rocm-7.2.4/lib/libamdhip64.so.7"));
    std::os::unix::fs::symlink("rocm-7.2.4", root.join("opt/rocm")).unwrap();
    // A hard link to ldconfig's copy is the same file.
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::hard_link(&ld, root.join("usr/lib/libamdhip64.so.5")).unwrap();
    let sp = root.join("venv/lib/python3.11/site-packages");
    let torch = copy(HIP5, &sp.join("torch/lib/libamdhip64.so"));
    let mut s = search_in(
        &root,
        &[
            ("libamdhip64.so.5", &ld),
            ("libamdhip64.so", &root.join("ld/libamdhip64.so")),
        ],
    );
    s.rocm_path = Some(root.join("rocmpath"));
    s.python = vec![PyEnv::at(&root.join("venv"), "$VIRTUAL_ENV")];
    assert_eq!(s.python[0].site_packages, std::slice::from_ref(&sp));

    let c = find_all(&pack("hip"), &LibOverrides::new(), &s).unwrap();
    let got: Vec<(PathBuf, &str)> = c
        .found
        .iter()
        .map(|f| (f.path.clone(), f.how.as_str()))
        .collect();
    let torch_how = format!(
        "torch/lib of the Python environment {} ($VIRTUAL_ENV)",
        root.join("venv").display()
    );
    let rocm_lib = format!("{}/lib", root.join("opt/rocm").display());
    let r6_how = format!("ROCm install {}", root.join("opt/rocm-6.4.3").display());
    assert_eq!(
        got,
        [
            (ld.clone(), "ldconfig"),
            (rp, "$ROCM_PATH/lib"),
            (
                root.join("opt/rocm/lib/libamdhip64.so.7"),
                rocm_lib.as_str()
            ),
            (r6, r6_how.as_str()),
            (torch, torch_how.as_str()),
        ]
    );
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    assert!(r7.is_file());

    // --lib: only that file.
    let mut over = LibOverrides::new();
    over.insert(
        "hip".into(),
        root.join("opt/rocm-6.4.3/lib/libamdhip64.so.6"),
    );
    let c = find_all(&pack("hip"), &over, &s).unwrap();
    assert_eq!(c.found.len(), 1);
    assert_eq!(c.found[0].how, "--lib");

    // Nothing anywhere: the error names where it looked and how to say where.
    let empty = search_in(&root.join("none"), &[]);
    let e = find_all(&pack("hip"), &LibOverrides::new(), &empty).unwrap_err();
    assert!(
        e.contains("give --lib hip=/path/to/libamdhip64.so.5"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn wheels_and_conda_environments_hold_nvidia_libraries() {
    let hsa = "/lib/x86_64-linux-gnu/libhsa-runtime64.so.1";
    if !need(hsa) {
        return;
    }
    let root = tmp("wheels");
    let sp = root.join("env/lib/python3.12/site-packages");
    let nccl = copy(hsa, &sp.join("nvidia/nccl/lib/libnccl.so.2"));
    let cudart = copy(hsa, &sp.join("nvidia/cuda_runtime/lib/libcudart.so.12"));
    let conda = copy(hsa, &root.join("env/lib/libnccl.so.2"));
    let mut s = search_in(&root, &[]);
    s.python = vec![PyEnv::at(&root.join("env"), "$CONDA_PREFIX")];
    let c = find_all(&pack("nccl"), &LibOverrides::new(), &s).unwrap();
    let paths: Vec<&Path> = c.found.iter().map(|f| f.path.as_path()).collect();
    assert_eq!(paths, [nccl.as_path(), conda.as_path()]);
    assert!(c.found[0]
        .how
        .starts_with("nvidia/nccl/lib of the Python environment"));
    assert!(c.found[1].how.starts_with("lib/ of the Python environment"));
    let c = find_all(&pack("cuda"), &LibOverrides::new(), &s).unwrap();
    assert_eq!(c.found[0].path, cudart);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_copy_others_can_change_is_skipped_as_root_and_said_why() {
    if !need(HIP5) {
        return;
    }
    let root = tmp("trust");
    let ok = copy(HIP5, &root.join("usr/lib/libamdhip64.so.5"));
    let open = root.join("opt/rocm-7.2.4/lib");
    copy(HIP5, &open.join("libamdhip64.so.7"));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut s = search_in(&root, &[]);
    let c = find_all(&pack("hip"), &LibOverrides::new(), &s).unwrap();
    assert_eq!(c.found.len(), 2, "not root: both probed");
    s.as_root = true;
    let c = find_all(&pack("hip"), &LibOverrides::new(), &s).unwrap();
    assert_eq!(c.found.len(), 1);
    assert_eq!(c.found[0].path, ok);
    assert_eq!(c.skipped.len(), 1);
    let (f, why) = &c.skipped[0];
    assert_eq!(f.path, open.join("libamdhip64.so.7"));
    assert!(
        why.starts_with("not trusted as root:") && why.contains("writable by everyone"),
        "{why}"
    );
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_job_s_copy_is_probed_and_the_others_named() {
    if !need(HIP5) {
        return;
    }
    let root = tmp("job");
    let sys = copy(HIP5, &root.join("usr/lib/libamdhip64.so.5"));
    let private = copy(HIP5, &root.join("app/lib/libamdhip64.so.5"));
    let s = search_in(&root, &[]);
    let loads = JobLoads {
        said: Some("the command ./app".into()),
        files: vec![Loaded {
            path: private.clone(),
            name: "libamdhip64.so.5".into(),
            how: "app NEEDs libamdhip64.so.5, found through its runpath".into(),
        }],
    };
    let c = job::choose(&pack("hip"), &LibOverrides::new(), &s, &loads).unwrap();
    assert_eq!(c.probed.len(), 1);
    assert_eq!(c.probed[0].path, private);
    assert!(c.probed[0]
        .how
        .starts_with("the command ./app loads it: app NEEDs"));
    assert_eq!(c.not_probed.len(), 1);
    assert_eq!(c.not_probed[0].path, sys);
    // A job that does not load it itself (a launcher): every copy.
    let launcher = JobLoads {
        said: Some("the command sh".into()),
        files: Vec::new(),
    };
    let c = job::choose(&pack("hip"), &LibOverrides::new(), &s, &launcher).unwrap();
    assert_eq!(c.probed.len(), 1);
    assert!(c.why.contains("does not load it itself"), "{}", c.why);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_linker_follows_needed_entries_through_its_search_path() {
    let rccl = format!("{SID}/librccl.so.1");
    if !need(&rccl) {
        return;
    }
    // The sid RCCL needs libamdhip64.so.7, which the host's ldconfig does not know.
    let cache = LdCache::default();
    let mut l = Linker {
        cache: &cache,
        ld_library_path: Vec::new(),
        default_dirs: Vec::new(),
    };
    let order = l.load_order(Path::new(&rccl)).unwrap();
    assert!(
        !order.iter().any(|o| o.name == "libamdhip64.so.7"),
        "{order:?}"
    );
    l.ld_library_path = vec![PathBuf::from(SID)];
    let order = l.load_order(Path::new(&rccl)).unwrap();
    let hip = order
        .iter()
        .find(|o| o.name == "libamdhip64.so.7")
        .unwrap_or_else(|| panic!("{order:?}"));
    assert_eq!(hip.path, Path::new(SID).join("libamdhip64.so.7"));
    assert!(
        hip.how
            .starts_with("librccl.so.1 NEEDs libamdhip64.so.7, found through $LD_LIBRARY_PATH"),
        "{}",
        hip.how
    );
    // What HIP 7 needs in turn is loaded from there too.
    assert!(order.iter().any(|o| o.name == "libhsa-runtime64.so.1"
        && o.path == Path::new(SID).join("libhsa-runtime64.so.1")));
}

#[test]
fn nested_probes_follow_the_needed_entry_of_the_real_rccl_7() {
    let rccl = Path::new(SID).join("librccl.so.1");
    if !need(rccl.to_str().unwrap()) {
        return;
    }
    let hip7 = std::fs::canonicalize(Path::new(SID).join("libamdhip64.so.7")).unwrap();
    let root = tmp("nested");
    // ldconfig knows HIP 5 only (as on the host): never the file for a library that NEEDs 7.
    let s = search_in(&root, &[("libamdhip64.so.5", Path::new(HIP5))]);
    let f = find_nested("libamdhip64.so.5", &rccl, &LibOverrides::new(), &s).unwrap();
    assert_eq!(f.path, hip7);
    assert!(
        f.how
            == "beside the pack's library (it has no runpath, and ldconfig here does not know \
                  libamdhip64.so.7), for the libamdhip64.so.7 the pack's library NEEDs",
        "{}",
        f.how
    );
    // A HIP 7 in a search folder comes before the caller's own folder.
    let other = copy(
        hip7.to_str().unwrap(),
        &root.join("usr/lib/libamdhip64.so.7"),
    );
    let f = find_nested("libamdhip64.so.5", &rccl, &LibOverrides::new(), &s).unwrap();
    assert_eq!(f.path, other);
    assert_eq!(
        f.how,
        "standard folder, for the libamdhip64.so.7 the pack's library NEEDs"
    );
    // ldconfig before the search folders; --lib by the name RCCL needs before all.
    let s2 = search_in(&root, &[("libamdhip64.so.7", &hip7)]);
    let f = find_nested("libamdhip64.so.5", &rccl, &LibOverrides::new(), &s2).unwrap();
    assert_eq!(
        (f.path.as_path(), f.how.as_str()),
        (
            hip7.as_path(),
            "ldconfig, for the libamdhip64.so.7 the pack's library NEEDs"
        )
    );
    let mut over = LibOverrides::new();
    over.insert("libamdhip64.so.7".into(), other.clone());
    let f = find_nested("libamdhip64.so.5", &rccl, &over, &s2).unwrap();
    assert_eq!((f.path, f.how.as_str()), (other, "--lib"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_interpreter_is_asked_for_its_environment() {
    if !need("/usr/bin/python3") {
        return;
    }
    let env = PyEnv::ask(Path::new("/usr/bin/python3")).unwrap();
    assert_eq!(env.prefix, Path::new("/usr"));
    assert!(!env.site_packages.is_empty(), "{env:?}");
    assert_eq!(env.said, "--python /usr/bin/python3");
    let e = PyEnv::ask(Path::new("/nonexistent/python")).unwrap_err();
    assert!(
        e.starts_with("--python /nonexistent/python: cannot run it"),
        "{e}"
    );
}

#[test]
fn each_probe_attaches_to_the_copies_that_define_it() {
    use crate::compose::{compose, LibCopy, Options, PackInput};
    use crate::library::symbols::Functions;
    let hip = pack("hip");
    let all = Functions::from_names(hip.probes.iter().map(|p| p.function.clone()));
    let mut fewer = all.clone();
    fewer.remove("hipMalloc");
    let input = |also: Vec<LibCopy>| PackInput {
        pack: &hip,
        library: "/a/libamdhip64.so.6".into(),
        functions: fewer.clone(),
        nested: Vec::new(),
        lib_version: None,
        also,
    };
    let v = semver::Version::new(0, 17, 0);
    let one = compose(&[input(Vec::new())], &v, &Options::default()).unwrap();
    let two = compose(
        &[input(vec![LibCopy {
            library: "/b/libamdhip64.so.7".into(),
            functions: all.clone(),
            nested: Vec::new(),
        }])],
        &v,
        &Options::default(),
    )
    .unwrap();
    let s = &two.script;
    assert!(
        s.contains("\nuprobe:/a/libamdhip64.so.6:hipFree,\nuprobe:/b/libamdhip64.so.7:hipFree\n{"),
        "{s}"
    );
    assert!(
        s.contains("\nuprobe:/b/libamdhip64.so.7:hipMalloc\n{"),
        "{s}"
    );
    assert!(!s.contains("/a/libamdhip64.so.6:hipMalloc"), "{s}");
    assert!(two
        .left_out
        .iter()
        .any(|l| l.function == "hipMalloc on /a/libamdhip64.so.6"));
    assert!(one.left_out.iter().any(|l| l.function == "hipMalloc"));
    // Every attach point counts: each probe of the first copy twice, and hipMalloc's entry
    // and exit on the second.
    assert_eq!(two.probe_count, 2 * one.probe_count + 2);
    // The same records: the schema does not depend on the files.
    assert_eq!(one.schema.records.len() + 2, two.schema.records.len());
}

#[test]
fn the_environment_bthost_is_installed_in() {
    let d = tmp("installed-env");
    std::fs::create_dir_all(d.join("venv/bin")).unwrap();
    std::fs::write(d.join("venv/pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    std::fs::create_dir_all(d.join("conda/bin")).unwrap();
    std::fs::create_dir_all(d.join("conda/conda-meta")).unwrap();
    std::fs::create_dir_all(d.join("plain/bin")).unwrap();
    use super::search::installed_env;
    assert_eq!(
        installed_env(&d.join("venv/bin/bthost")),
        Some(d.join("venv"))
    );
    assert_eq!(
        installed_env(&d.join("conda/bin/bthost")),
        Some(d.join("conda"))
    );
    assert_eq!(installed_env(&d.join("plain/bin/bthost")), None);
    assert_eq!(installed_env(&d.join("venv/bthost")), None);
}
