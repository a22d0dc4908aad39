//! Writing an output file with direct I/O (`O_DIRECT`): the bytes go from our buffer to the
//! disk without being copied into the page cache. The converter's outputs are gigabytes that
//! nobody reads back during the conversion, and the copy into fresh page-cache pages is what
//! its system time was: on this project's VM (kernel 6.18, virtio-balloon), 2.7 GB written
//! buffered into a file after the old outputs were deleted took 6.7-6.8 s of system time,
//! and 0.3-0.4 s with `O_DIRECT` (1.9 s wall, the disk's own speed; `dd bs=1M`, measured in
//! the note of issue 21).
//!
//! Direct I/O wants the buffer's address, the length and the file offset aligned to the
//! device's logical block size: whole 4 KiB blocks (every block size Linux uses divides
//! it) go out from a 4 KiB-aligned buffer, and the last partial block is written after the
//! flag is cleared, buffered. A file system that refuses the flag (when it is set, or at
//! the first write: `EINVAL`) gets the same bytes buffered.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// The alignment and unit of a direct write.
pub const BLOCK: usize = 4096;

/// One aligned block of the staging buffer.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

/// A file written in whole aligned blocks with `O_DIRECT`, its tail (and everything, where
/// direct I/O is not asked for or the file system refuses it) buffered.
pub struct DirectFile {
    file: File,
    direct: bool,
    /// The staging buffer: whole blocks, of which the first `len` bytes hold data.
    blocks: Vec<Block>,
    len: usize,
}

impl DirectFile {
    /// `file`, set to direct I/O if `direct` and its file system takes it; `chunk`: the bytes
    /// usually written at once (the staging buffer, only for direct I/O, holds that and one
    /// block more).
    pub fn new(file: File, chunk: usize, direct: bool) -> DirectFile {
        let direct = direct && set_direct(&file, true).is_ok();
        let blocks = if direct {
            vec![Block([0; BLOCK]); chunk.div_ceil(BLOCK) + 1]
        } else {
            Vec::new()
        };
        DirectFile {
            file,
            direct,
            blocks,
            len: 0,
        }
    }

    /// Whether the file is being written with direct I/O (false once it fell back).
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes `data` after what came before: the whole blocks now, the rest held.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        if !self.direct {
            return self.file.write_all(data);
        }
        // Whole blocks from an aligned buffer (bgwrite.rs hands over such chunks) go to the
        // disk from where they are: no copy through the staging blocks.
        if self.len == 0 && (data.as_ptr() as usize).is_multiple_of(BLOCK) {
            let whole = data.len() / BLOCK * BLOCK;
            if let Some(off) = write_direct(&self.file, &data[..whole])? {
                // Nothing is staged: the rest goes buffered from here.
                self.fall_back()?;
                return self.file.write_all(&data[off..]);
            }
            data = &data[whole..];
        }
        while !data.is_empty() {
            let at = self.len;
            let room = self.blocks.len() * BLOCK - at;
            let n = room.min(data.len());
            as_bytes_mut(&mut self.blocks)[at..at + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            self.write_blocks()?;
        }
        Ok(())
    }

    /// Writes out the whole blocks staged, keeping the partial last one at the front.
    fn write_blocks(&mut self) -> io::Result<()> {
        let whole = self.len / BLOCK * BLOCK;
        if whole == 0 {
            return Ok(());
        }
        if let Some(off) = write_direct(&self.file, &as_bytes(&self.blocks)[..whole])? {
            self.fall_back()?;
            (&self.file).write_all(&as_bytes(&self.blocks)[off..self.len])?;
            self.len = 0;
            return Ok(());
        }
        let rest = self.len - whole;
        as_bytes_mut(&mut self.blocks).copy_within(whole..whole + rest, 0);
        self.len = rest;
        Ok(())
    }

    /// Direct I/O refused: everything from here on is written buffered.
    fn fall_back(&mut self) -> io::Result<()> {
        self.direct = false;
        set_direct(&self.file, false)
    }

    /// Writes the partial last block, buffered, and flushes: the file is complete.
    pub fn finish(mut self) -> io::Result<()> {
        if self.direct && self.len > 0 {
            set_direct(&self.file, false)?;
            (&self.file).write_all(&as_bytes(&self.blocks)[..self.len])?;
        }
        self.file.flush()
    }
}

/// The blocks as bytes.
/// Writes `bytes` (from a block's start, whole blocks long) with direct I/O, one write at a
/// time, so that a refusal after a partial write goes on from where the file is. Returns how
/// far it got if refused (`EINVAL`: a file system that took the flag but not the write, or an
/// offset a partial write left unaligned); None when all of it went.
fn write_direct(mut file: &File, bytes: &[u8]) -> io::Result<Option<usize>> {
    let mut off = 0;
    while off < bytes.len() {
        match file.write(&bytes[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Some(off)),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn as_bytes(blocks: &[Block]) -> &[u8] {
    // SAFETY: `Block` is a `repr(C)` array of bytes without padding, so `blocks` is
    // `len * BLOCK` initialized bytes, borrowed for the slice's lifetime.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), blocks.len() * BLOCK) }
}

fn as_bytes_mut(blocks: &mut [Block]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; the exclusive borrow makes the bytes unaliased.
    unsafe {
        std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), blocks.len() * BLOCK)
    }
}

/// Sets or clears `O_DIRECT` on `file`.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let want = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, want) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_in_pieces(dir: &std::path::Path, total: usize, piece: usize) -> bool {
        let path = dir.join(format!(
            "bthost-direct-{}-{total}-{piece}",
            std::process::id()
        ));
        let want: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut f = DirectFile::new(File::create(&path).unwrap(), 1 << 16, true);
        let direct = f.is_direct();
        for p in want.chunks(piece.max(1)) {
            f.write_all(p).unwrap();
        }
        f.finish().unwrap();
        let got = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(got == want, "{total} bytes in pieces of {piece}: differ");
        direct
    }

    /// Every length (empty, under a block, whole blocks, over the staging buffer) comes out
    /// whole and in order, in pieces of any size, on the file system of the build folder (which
    /// takes direct I/O here: ext4) and on /dev/shm (tmpfs, which may refuse it).
    #[test]
    fn every_length_is_written_whole() {
        let target = std::env::current_exe().unwrap();
        let dirs = [target.parent().unwrap().to_path_buf(), "/dev/shm".into()];
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            for total in [0, 1, 4095, 4096, 4097, 65536, 65536 + 4096 + 3, 300_001] {
                for piece in [1, 7, 4096, 70_000] {
                    if total > 70_000 && piece < 7 {
                        continue;
                    }
                    write_in_pieces(dir, total, piece);
                }
            }
        }
    }

    /// Pieces of an aligned buffer (written from where they are when whole blocks start them
    /// and nothing is staged) mixed with pieces that go through the staging copy, in both
    /// orders: the file is the buffer, byte for byte.
    #[test]
    fn aligned_pieces_and_staged_ones_mix() {
        let total = 9 * BLOCK + 77;
        let mut blocks = vec![Block([0; BLOCK]); total.div_ceil(BLOCK)];
        for (i, b) in as_bytes_mut(&mut blocks).iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        let want = &as_bytes(&blocks)[..total];
        let cuts = [
            0,
            2 * BLOCK,
            2 * BLOCK + 100,
            4 * BLOCK,
            5 * BLOCK + 5,
            7 * BLOCK,
            total,
        ];
        let dir = std::env::current_exe().unwrap();
        let path = dir
            .parent()
            .unwrap()
            .join(format!("bthost-direct-mix-{}", std::process::id()));
        let mut f = DirectFile::new(File::create(&path).unwrap(), 1 << 16, true);
        for w in cuts.windows(2) {
            f.write_all(&want[w[0]..w[1]]).unwrap();
        }
        f.finish().unwrap();
        let got = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(got == want, "{} bytes back of {total}: differ", got.len());
    }

    /// On an ext4 build folder the writes really are direct (else the test above would not
    /// test the aligned path).
    #[test]
    fn the_build_folder_takes_direct_io() {
        let dir = std::env::current_exe().unwrap();
        let dir = dir.parent().unwrap();
        let fs = std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(dir)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if fs != "ext2/ext3" {
            eprintln!("build folder on {fs:?}: not checking direct I/O");
            return;
        }
        assert!(write_in_pieces(dir, 200_000, 5000));
    }
}
