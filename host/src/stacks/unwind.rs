//! Native unwinding, done after the process runs again: from a thread's registers and a copy
//! of its stack, the return addresses, by the call frame information of `.eh_frame` (what
//! gcc and clang emit for every function, frame pointer or not), falling back to the frame
//! pointer chain where a function has none. Addresses only: naming them is the offline
//! symbolizer's job (crate::symbolize), from the maps kept with the stacks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, RegisterRule, UnwindContext,
    UnwindSection, X86_64,
};
use object::{Object, ObjectSection, ObjectSegment};

use super::memory::StackCopy;
use super::uretprobe;
use crate::symbolize::maps::{self, Mapping};

/// At most this many frames per thread.
pub const MAX_FRAMES: usize = 128;

/// The call frame information of one file, as its own addresses have it.
struct Cfi {
    eh_frame: Vec<u8>,
    eh_frame_addr: u64,
    hdr: Option<(Vec<u8>, u64)>,
    text_addr: u64,
    /// Loadable segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

impl Cfi {
    fn load(path: &Path) -> Option<Cfi> {
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let sect = |name: &str| {
            file.section_by_name(name)
                .and_then(|s| Some((s.data().ok()?.to_vec(), s.address())))
        };
        let (eh_frame, eh_frame_addr) = sect(".eh_frame")?;
        Some(Cfi {
            eh_frame,
            eh_frame_addr,
            hdr: sect(".eh_frame_hdr"),
            text_addr: file.section_by_name(".text").map_or(0, |s| s.address()),
            segments: file
                .segments()
                .map(|s| {
                    let (off, size) = s.file_range();
                    (off, size, s.address())
                })
                .collect(),
        })
    }

    fn vaddr(&self, file_off: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(o, sz, _)| *o <= file_off && file_off < o + sz)
            .map(|(o, _, v)| file_off - o + v)
    }

    /// The CFA rule and the rules for the return address and rbp at `addr` (the file's own).
    fn rules(&self, ctx: &mut UnwindContext<usize>, addr: u64) -> Option<Rules> {
        let eh = EhFrame::new(&self.eh_frame, LittleEndian);
        let mut bases = BaseAddresses::default()
            .set_eh_frame(self.eh_frame_addr)
            .set_text(self.text_addr);
        let row = match &self.hdr {
            Some((hdr, hdr_addr)) => {
                bases = bases.set_eh_frame_hdr(*hdr_addr);
                let parsed = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8).ok()?;
                let table = parsed.table()?;
                table
                    .unwind_info_for_address(&eh, &bases, ctx, addr, EhFrame::cie_from_offset)
                    .ok()?
                    .clone()
            }
            None => eh
                .unwind_info_for_address(&bases, ctx, addr, EhFrame::cie_from_offset)
                .ok()?
                .clone(),
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => (register.0, *offset),
            // Expressions (PLT stubs, signal frames): the frame pointer fallback.
            CfaRule::Expression(_) => return None,
        };
        let rule = |r| match row.register(r) {
            RegisterRule::Offset(o) => Rule::At(o),
            RegisterRule::Undefined => Rule::Undefined,
            _ => Rule::Same,
        };
        Some(Rules {
            cfa,
            ra: rule(X86_64::RA),
            rbp: rule(X86_64::RBP),
            rbx: rule(X86_64::RBX),
        })
    }
}

#[derive(Clone, Copy)]
enum Rule {
    At(i64),
    Undefined,
    Same,
}

struct Rules {
    cfa: (u16, i64),
    ra: Rule,
    rbp: Rule,
    rbx: Rule,
}

/// The files' call frame information, loaded once per file (across dumps).
#[derive(Default)]
pub struct Unwinder {
    files: HashMap<PathBuf, Option<Cfi>>,
    ctx: Option<Box<UnwindContext<usize>>>,
}

/// The registers an unwind follows.
#[derive(Clone, Copy, Debug)]
pub struct Regs {
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub rbx: u64,
}

impl Regs {
    fn get(&self, dwarf: u16) -> Option<u64> {
        match dwarf {
            3 => Some(self.rbx),
            6 => Some(self.rbp),
            7 => Some(self.rsp),
            _ => None,
        }
    }
}

impl Unwinder {
    /// The code addresses of a thread's frames, innermost first: its pc, then each return
    /// address.
    /// `uprobes`: the process's uretprobe trampoline page (crate::stacks::uretprobe); `code`
    /// reads 8 bytes of its code.
    pub fn unwind(
        &mut self,
        maps: &[Mapping],
        mut r: Regs,
        stack: &StackCopy,
        uprobes: Option<(u64, u64)>,
        code: &dyn Fn(u64) -> Option<[u8; 8]>,
    ) -> Vec<u64> {
        let mut pcs = vec![r.rip];
        let ctx = self
            .ctx
            .get_or_insert_with(|| Box::new(UnwindContext::new()));
        while pcs.len() < MAX_FRAMES {
            // A return address points after the call: look up the call itself.
            let look = if pcs.len() == 1 { r.rip } else { r.rip - 1 };
            let rules = maps::find(maps, look).and_then(|(m, off)| {
                let cfi = self
                    .files
                    .entry(m.path.clone())
                    .or_insert_with(|| Cfi::load(&m.path))
                    .as_ref()?;
                let vaddr = cfi.vaddr(off)?;
                cfi.rules(ctx, vaddr)
            });
            let next = match rules {
                Some(rules) => step_cfi(&r, &rules, stack),
                None => step_fp(&r, stack),
            };
            let Some(mut n) = next else { break };
            if uprobes.is_some_and(|(s, e)| s <= n.rip && n.rip < e) {
                // A traced call's return address, hidden: the caller, then on from above it.
                let Some((caller, ret, rsp)) = uretprobe::recover(maps, stack, n.rsp, code) else {
                    pcs.push(uretprobe::HIDDEN);
                    break;
                };
                pcs.push(uretprobe::HIDDEN | caller);
                n.rip = ret;
                n.rsp = rsp;
            }
            // The stack grows down: a frame above must be higher (else a loop, or garbage).
            if n.rip == 0 || n.rsp <= r.rsp {
                break;
            }
            // A return address outside every mapped file is garbage read past the last frame
            // that unwound (code generated at run time is lost with it).
            if maps::find(maps, n.rip - 1).is_none() {
                break;
            }
            pcs.push(n.rip);
            r = n;
        }
        pcs
    }
}

fn step_cfi(r: &Regs, rules: &Rules, stack: &StackCopy) -> Option<Regs> {
    let cfa = r.get(rules.cfa.0)?.checked_add_signed(rules.cfa.1)?;
    let at = |rule: Rule, old: u64| match rule {
        Rule::At(o) => stack.u64_at(cfa.checked_add_signed(o)?),
        Rule::Undefined => None,
        Rule::Same => Some(old),
    };
    let rip = match rules.ra {
        Rule::Undefined => return None, // the outermost frame (_start, clone)
        ra => at(ra, 0)?,
    };
    Some(Regs {
        rip,
        rsp: cfa,
        rbp: at(rules.rbp, r.rbp).unwrap_or(r.rbp),
        rbx: at(rules.rbx, r.rbx).unwrap_or(r.rbx),
    })
}

/// The frame pointer chain: [rbp] is the caller's rbp, [rbp + 8] the return address.
fn step_fp(r: &Regs, stack: &StackCopy) -> Option<Regs> {
    if !stack.contains(r.rbp) {
        return None;
    }
    Some(Regs {
        rip: stack.u64_at(r.rbp + 8)?,
        rsp: r.rbp + 16,
        rbp: stack.u64_at(r.rbp)?,
        rbx: r.rbx,
    })
}
