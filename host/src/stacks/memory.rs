//! Reading another process's memory: the copy of a thread's stack taken while it is held,
//! which the unwinder then reads from after the process runs again.

/// `len` bytes of `pid`'s memory at `addr`, or fewer where the mapping ends (the stack's top).
pub fn read(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` is our own buffer of `len` bytes; the remote side is only read.
    let n = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
    buf.truncate(n.max(0) as usize);
    buf
}

/// A copy of a stack from `base` up: 8-byte reads inside it, None outside.
pub struct StackCopy {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl StackCopy {
    pub fn u64_at(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let b = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.bytes.len() as u64
    }
}
