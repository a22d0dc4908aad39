//! The call sites of the operations the report names: each group call's `caller` field (its
//! return address, crate::pack::ArgFrom::ReturnAddress), named as a stack frame is (function,
//! file:line where DWARF has it, else the object), from the memory maps `record` kept beside
//! each log. Only the few addresses the report prints are looked up, once each.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::analyze::Findings;
use super::gather::ProcKey;
use crate::stacks::frames;
use crate::symbolize::Symbolizer;

#[derive(Clone, Debug, Default)]
pub struct Sites {
    names: HashMap<(ProcKey, u64), String>,
}

impl Sites {
    /// Names the call sites of the members `findings` shows, from the logs' recorded maps.
    pub fn load(logs: &[PathBuf], findings: &Findings) -> Sites {
        let mut want: BTreeSet<(ProcKey, u64)> = BTreeSet::new();
        for d in findings.groups.iter().filter_map(|g| g.divergence.as_ref()) {
            want.extend(d.entered.iter().map(|e| (e.proc, e.site)));
            want.extend(
                d.missing
                    .iter()
                    .filter_map(|m| Some((m.proc?, m.last.as_ref()?.site))),
            );
        }
        want.retain(|&(_, a)| a != 0);
        let mut names = HashMap::new();
        let mut by_log: Vec<Option<Symbolizer>> = Vec::new();
        for ((log, pid), addr) in want {
            let i = log as usize;
            if by_log.len() <= i {
                by_log.resize_with(i + 1, || None);
            }
            let sym = by_log[i].get_or_insert_with(|| {
                let mut s = Symbolizer::default();
                if let Some(path) = logs.get(i) {
                    for (pid, maps) in crate::record::recorded_maps(path) {
                        // A maps file that cannot be read leaves its addresses unnamed.
                        let _ = s.add_maps(pid, &maps);
                    }
                }
                s
            });
            let f = frames::native(sym.frame(pid, addr, true));
            // An address no map covers says nothing a reader can use.
            if !f.unknown {
                names.insert(((log, pid), addr), f.text);
            }
        }
        Sites { names }
    }

    /// The call site `addr` of process `proc` (`train_step (train.c:31)`), if named.
    pub fn name(&self, proc: ProcKey, addr: u64) -> Option<&str> {
        self.names.get(&(proc, addr)).map(String::as_str)
    }
}
