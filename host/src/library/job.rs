//! Which copy of a pack's library the job loads, when the job is known.
//!
//! - `record -- CMD`: the files CMD's program loads, found as the dynamic linker would find
//!   them: each DT_NEEDED name of each loaded file, through that file's DT_RPATH (and the
//!   program's), `$LD_LIBRARY_PATH`, its DT_RUNPATH, ldconfig's cache, then the default folders
//!   (crate::library::deps reads the names and paths).
//! - `record --pid PID`: the files /proc/PID/maps lists.
//!
//! A pack then probes the copy (or copies) the job loads, and only those: the other copies on
//! the machine are named, not probed. When the job is not known (system-wide, the flight
//! recorder, announced processes), or the job's program does not load the library itself (a
//! launcher, a shell, an interpreter that loads it later), every copy found is probed
//! (crate::library::search).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::deps::{self, Deps};
use super::search::{base_name, file_id, find_all, pack_bases, probe_path, Search};
use super::{Found, LdCache, LibOverrides};
use crate::pack::Pack;

/// What is known of the job to trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Job {
    /// System-wide, the flight recorder, announced processes: any process may be traced.
    #[default]
    Unknown,
    /// `record -- PROGRAM ARGS`: the program as given.
    Command(String),
    /// `record --pid PID,...`: running processes.
    Pids(Vec<u32>),
}

/// A file the job loads, and how that is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub path: PathBuf,
    /// The name it is loaded by (a DT_NEEDED entry, or the mapped file's name).
    pub name: String,
    pub how: String,
}

/// The files a job loads.
#[derive(Clone, Debug, Default)]
pub struct JobLoads {
    /// The job in words (`the command ./prog`, `pid 1234`); None: not known.
    pub said: Option<String>,
    pub files: Vec<Loaded>,
}

impl JobLoads {
    /// The files the job loads that are a copy of `pack`'s library (same base name:
    /// `libamdhip64.so.7` for a pack of `libamdhip64.so.5`).
    pub fn of_pack(&self, pack: &Pack) -> Vec<&Loaded> {
        let bases = pack_bases(pack);
        self.files
            .iter()
            .filter(|l| {
                let file = l.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                [l.name.as_str(), file]
                    .iter()
                    .any(|n| bases.iter().any(|b| b == base_name(n)))
            })
            .collect()
    }
}

/// The dynamic linker, as far as finding files goes.
#[derive(Clone, Debug)]
pub struct Linker<'a> {
    pub cache: &'a LdCache,
    pub ld_library_path: Vec<PathBuf>,
    pub default_dirs: Vec<PathBuf>,
}

/// The folders the dynamic linker searches last (Debian's x86-64 ld.so).
pub const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

impl<'a> Linker<'a> {
    /// This machine's, with bthost's `$LD_LIBRARY_PATH` (the command inherits it).
    pub fn standard(cache: &'a LdCache) -> Linker<'a> {
        let ld_library_path = std::env::var_os("LD_LIBRARY_PATH")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| p.is_absolute())
                    .collect()
            })
            .unwrap_or_default();
        Linker {
            cache,
            ld_library_path,
            default_dirs: DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
        }
    }

    /// The files loading `program` loads, in the linker's (breadth-first) order, the program
    /// first.
    pub fn load_order(&self, program: &Path) -> Result<Vec<Loaded>, String> {
        struct Obj {
            name: String,
            deps: Deps,
        }
        let prog_name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prog_deps = deps::read(program)?;
        let mut names: HashSet<String> = HashSet::new();
        let mut objs = vec![Obj {
            name: prog_name.clone(),
            deps: prog_deps,
        }];
        let mut out = vec![Loaded {
            path: program.to_path_buf(),
            name: prog_name,
            how: "the program itself".into(),
        }];
        let mut i = 0;
        // A bound against a malformed file's loops; real programs load a few hundred.
        while i < objs.len() && objs.len() < 2000 {
            for need in objs[i].deps.needed.clone() {
                if names.contains(&need) {
                    continue;
                }
                let Some((path, via)) = self.search(&need, &objs[i].deps, &objs[0].deps, i == 0)
                else {
                    continue;
                };
                names.insert(need.clone());
                let d = deps::read(&path).unwrap_or_default();
                if let Some(s) = &d.soname {
                    names.insert(s.clone());
                }
                out.push(Loaded {
                    path,
                    name: need.clone(),
                    how: format!("{} NEEDs {need}, found {via}", objs[i].name),
                });
                objs.push(Obj {
                    name: need,
                    deps: d,
                });
            }
            i += 1;
        }
        Ok(out)
    }

    /// Where a file with `obj`'s dynamic section finds `need`, and how said.
    fn search(
        &self,
        need: &str,
        obj: &Deps,
        program: &Deps,
        is_program: bool,
    ) -> Option<(PathBuf, String)> {
        if need.contains('/') {
            let p = PathBuf::from(need);
            return p.is_file().then(|| (p, "by its path".into()));
        }
        let has_runpath = !obj.old_rpath && !obj.runpath.is_empty();
        let mut dirs: Vec<(&Path, &str)> = Vec::new();
        if !has_runpath {
            if obj.old_rpath {
                dirs.extend(
                    obj.runpath
                        .iter()
                        .map(|d| (d.as_path(), "through its rpath")),
                );
            }
            if program.old_rpath && !is_program {
                dirs.extend(
                    program
                        .runpath
                        .iter()
                        .map(|d| (d.as_path(), "through the program's rpath")),
                );
            }
        }
        dirs.extend(
            self.ld_library_path
                .iter()
                .map(|d| (d.as_path(), "through $LD_LIBRARY_PATH")),
        );
        if has_runpath {
            dirs.extend(
                obj.runpath
                    .iter()
                    .map(|d| (d.as_path(), "through its runpath")),
            );
        }
        for (d, via) in dirs {
            let p = d.join(need);
            if p.is_file() {
                return Some((p, format!("{via} ({})", d.display())));
            }
        }
        if let Some(p) = self.cache.lookup(need) {
            return Some((p.to_path_buf(), "by ldconfig".into()));
        }
        self.default_dirs
            .iter()
            .map(|d| d.join(need))
            .find(|p| p.is_file())
            .map(|p| (p, "in a default folder".into()))
    }
}

/// The path of the program `prog` names: as given when it has a `/`, else found in `$PATH`.
pub fn program_path(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        let p = std::fs::canonicalize(prog).ok()?;
        return exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| exec(p))
}

/// The files mapped in /proc/PID/maps (a path the host can open to the same file: as listed,
/// else through /proc/PID/root for a process in another mount namespace).
pub fn mapped_files(pid: u32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut seen = HashSet::new();
    let mut v = Vec::new();
    for (inode, path) in text.lines().filter_map(maps_line_file) {
        if !seen.insert(path.to_string()) {
            continue;
        }
        let direct = PathBuf::from(path);
        let same = |p: &Path| file_id(p).is_some_and(|(_, ino)| ino == inode);
        if same(&direct) {
            v.push(direct);
        } else {
            let inside = PathBuf::from(format!("/proc/{pid}/root{path}"));
            if same(&inside) {
                v.push(inside);
            }
        }
    }
    v
}

/// A maps line's inode and file path (`addr perms offset dev inode path`), for file mappings.
pub fn maps_line_file(line: &str) -> Option<(u64, &str)> {
    let mut it = line.splitn(6, ' ');
    let _addr = it.next()?;
    let _perms = it.next()?;
    let _off = it.next()?;
    let _dev = it.next()?;
    let inode: u64 = it.next()?.parse().ok()?;
    let path = it.next()?.trim_start();
    (inode != 0 && path.starts_with('/') && !path.ends_with(" (deleted)")).then_some((inode, path))
}

/// What the job loads (nothing known for `Job::Unknown`, or a program that cannot be read).
pub fn loads(job: &Job, cache: &LdCache) -> JobLoads {
    match job {
        Job::Unknown => JobLoads::default(),
        Job::Command(prog) => {
            let said = format!("the command {prog}");
            let files = program_path(prog)
                .and_then(|p| Linker::standard(cache).load_order(&p).ok())
                .unwrap_or_default();
            JobLoads {
                said: Some(said),
                files,
            }
        }
        Job::Pids(pids) => {
            let mut files: Vec<Loaded> = Vec::new();
            for &pid in pids {
                for path in mapped_files(pid) {
                    if files.iter().any(|f| f.path == path) {
                        continue;
                    }
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    files.push(Loaded {
                        path,
                        name,
                        how: format!("mapped in /proc/{pid}/maps"),
                    });
                }
            }
            let said = pids
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            JobLoads {
                said: Some(format!(
                    "{} {said}",
                    if pids.len() == 1 { "pid" } else { "pids" }
                )),
                files,
            }
        }
    }
}

/// Which copies of a pack's library are probed, and the others found.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    /// Probed, preferred first (its version picks the variant).
    pub probed: Vec<Found>,
    /// Found, and usable, but not probed: the job loads another copy.
    pub not_probed: Vec<Found>,
    /// Not probed, and why (crate::library::search::Copies::skipped).
    pub skipped: Vec<(Found, String)>,
    /// Why these copies: `the command ./prog loads it`, `every copy found (system-wide)`.
    pub why: String,
    /// The job in words, when it decided (`the command ./prog`).
    pub job: Option<String>,
}

/// Chooses the copies of `pack`'s library to probe for the job that `loads` describes.
pub fn choose(
    pack: &Pack,
    overrides: &LibOverrides,
    search: &Search,
    loads: &JobLoads,
) -> Result<Choice, String> {
    if overrides.contains_key(&pack.name) {
        let c = find_all(pack, overrides, search)?;
        return Ok(Choice {
            probed: c.found,
            why: "given with --lib".into(),
            ..Choice::default()
        });
    }
    let of_job = loads.of_pack(pack);
    if let (Some(said), false) = (&loads.said, of_job.is_empty()) {
        // Whatever else is found only to be named: the job's file is enough.
        let copies = find_all(pack, overrides, search).unwrap_or_default();
        let mut choice = Choice {
            why: format!("{said} loads it"),
            job: Some(said.clone()),
            ..Choice::default()
        };
        let mut ids = HashSet::new();
        for l in of_job {
            let Some(id) = file_id(&l.path) else {
                continue;
            };
            if !ids.insert(id) {
                continue;
            }
            let found = Found {
                path: l.path.clone(),
                how: format!("{said} loads it: {}", l.how),
            };
            match search
                .untrusted(&l.path)
                .map_or_else(|| probe_path(&l.path), Err)
            {
                Ok(p) => choice.probed.push(Found { path: p, ..found }),
                Err(why) => choice.skipped.push((found, why)),
            }
        }
        if choice.probed.is_empty() {
            if let Some((f, why)) = choice.skipped.first() {
                return Err(format!(
                    "pack {}: {said} loads {}, which is not probed: {why}; give --lib {}={} to probe it anyway",
                    pack.name,
                    f.path.display(),
                    pack.name,
                    f.path.display()
                ));
            }
        } else {
            for f in copies.found {
                if file_id(&f.path).is_some_and(|id| !ids.contains(&id)) {
                    choice.not_probed.push(f);
                }
            }
            choice.skipped.extend(
                copies
                    .skipped
                    .into_iter()
                    .filter(|(f, _)| file_id(&f.path).is_some_and(|id| !ids.contains(&id))),
            );
            return Ok(choice);
        }
    }
    let copies = find_all(pack, overrides, search)?;
    Ok(Choice {
        why: match (&loads.said, copies.found.len()) {
            (Some(said), 1) => format!("{said} does not load it itself: the copy found"),
            (Some(said), _) => format!("{said} does not load it itself: every copy found"),
            (None, 1) => "the copy found".into(),
            (None, _) => "every copy found (the job is not known)".into(),
        },
        probed: copies.found,
        skipped: copies.skipped,
        not_probed: Vec::new(),
        job: None,
    })
}
