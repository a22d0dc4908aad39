//! Frames behind a uretprobe. To see a function return, the kernel replaces its return
//! address on the stack with its uretprobe trampoline (the `[uprobes]` page); the real one is
//! kept in the kernel, out of reach. So in a process that bpftrace traces, the caller of every
//! traced call in progress (`hipMemcpy`, `ncclAllReduce`) has lost its return address: the
//! unwind would stop there, or read garbage past it.
//!
//! The stack above is intact, so the unwind goes on from the next return address on it: the
//! first word above the traced function's frame that points just after a call instruction in
//! a mapped file (the hidden caller's own return address). The hidden caller itself is named
//! from that call when it is a direct one (`call rel32`: its target is the function that
//! called the traced one), without its line; else it stays unnamed.

use crate::symbolize::maps::{self, Mapping};

use super::memory::StackCopy;

/// A frame whose return address a uretprobe hid: `HIDDEN | the function's address` (0: unknown).
pub const HIDDEN: u64 = 1 << 63;

/// How far above the traced function's frame the scan looks (bytes).
const SCAN: u64 = 16 * 1024;

/// The `[uprobes]` page of a process, from its maps text.
pub fn trampoline(maps_text: &str) -> Option<(u64, u64)> {
    let line = maps_text.lines().find(|l| l.ends_with("[uprobes]"))?;
    let (s, e) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        u64::from_str_radix(s, 16).ok()?,
        u64::from_str_radix(e, 16).ok()?,
    ))
}

/// The length of a call instruction that ends at `code[8]` (the 8 bytes before a return
/// address), if one does: `call rel32`, `call [rip+disp32]`, `call reg`, `call [reg+disp]`.
fn call_before(code: &[u8; 8]) -> Option<usize> {
    let b = |back: usize| code[8 - back];
    if b(5) == 0xe8 {
        return Some(5);
    }
    if b(6) == 0xff && matches!(b(5), 0x15 | 0x90..=0x97) {
        return Some(6);
    }
    if b(2) == 0xff && matches!(b(1), 0xd0..=0xd7 | 0x10..=0x17) {
        return Some(2);
    }
    if b(3) == 0xff && matches!(b(2), 0x50..=0x57) {
        return Some(3);
    }
    if matches!(b(3), 0x41 | 0x43) && b(2) == 0xff && matches!(b(1), 0xd0..=0xd7) {
        return Some(3);
    }
    if matches!(b(4), 0x41 | 0x43) && b(3) == 0xff && matches!(b(2), 0x50..=0x57) {
        return Some(4);
    }
    None
}

/// From `rsp` (the hidden caller's stack pointer), the next return address on the stack: (the
/// hidden caller's function address or 0, that return address, the stack pointer after it).
pub fn recover(
    maps: &[Mapping],
    stack: &StackCopy,
    rsp: u64,
    code: impl Fn(u64) -> Option<[u8; 8]>,
) -> Option<(u64, u64, u64)> {
    let mut at = rsp;
    while at < rsp + SCAN {
        let v = stack.u64_at(at)?;
        if v > 8 && maps::find(maps, v - 1).is_some() {
            if let Some(bytes) = code(v - 8) {
                if let Some(len) = call_before(&bytes) {
                    let target = if len == 5 {
                        let rel = i32::from_le_bytes(bytes[4..8].try_into().ok()?);
                        v.checked_add_signed(i64::from(rel)).unwrap_or(0)
                    } else {
                        0
                    };
                    return Some((target, v, at + 8));
                }
            }
        }
        at += 8;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_calls_before_return_addresses() {
        let mut c = [0x90u8; 8];
        c[3..].copy_from_slice(&[0xe8, 1, 2, 3, 4]);
        assert_eq!(call_before(&c), Some(5));
        assert_eq!(call_before(&[0x90, 0x90, 0xff, 0x15, 1, 2, 3, 4]), Some(6));
        assert!(call_before(&[0x90, 0x90, 0x90, 0x90, 0x90, 0x41, 0xff, 0xd3]).is_some());
        assert_eq!(call_before(&[0x90; 8]), None);
        assert_eq!(
            trampoline("7fffffffe000-7fffffffff000 --xp 00000000 00:00 0  [uprobes]"),
            Some((0x7fffffffe000, 0x7fffffffff000))
        );
    }
}
