//! Raw mappings of a ring's parts (and of anonymous memory), unmapped on
//! drop: the checks need each `mmap`'s errno, and mappings the library
//! would never make.

use std::io;
use std::os::fd::RawFd;

use rmemring::RingLayout;

/// A mapping made with raw `mmap`, unmapped on drop (unless `len` is 0:
/// nothing is left of it).
pub(crate) struct Mapping {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: `ptr`/`len` is a range this mapping owns.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}

impl Mapping {
    /// `mprotect` of the first `len` bytes.
    pub(crate) fn protect(&self, len: usize, prot: i32) -> io::Result<()> {
        // SAFETY: `mprotect` on our own mapping; a refusal is the point.
        if unsafe { libc::mprotect(self.ptr.cast(), len, prot) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The 8-byte word at byte `offset`, read with a volatile load: the
    /// kernel may write it at any time.
    pub(crate) fn word(&self, offset: usize) -> u64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        // SAFETY: The word lies inside the mapping, which is readable and
        // page-aligned, so the word is aligned.
        unsafe { self.ptr.add(offset).cast::<u64>().read_volatile() }
    }

    /// A copy of the mapping's bytes, read one word at a time.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        (0..self.len / 8)
            .flat_map(|i| self.word(8 * i).to_le_bytes())
            .collect()
    }

    /// `mremap(ptr, len, new_len, flags[, to])`: on success the mapping
    /// is the new range.
    pub(crate) fn remap(&mut self, new_len: usize, flags: i32, to: *mut u8) -> io::Result<()> {
        // SAFETY: Resizing or moving our own mapping; if it moves onto
        // `to`, the caller reserved that range for it.
        let p = unsafe { libc::mremap(self.ptr.cast(), self.len, new_len, flags, to) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.ptr = p.cast();
        self.len = new_len;
        Ok(())
    }

    /// Unmaps `len` bytes at `offset`, splitting the mapping; returns the
    /// part after the hole (the part before stays in `self`).
    pub(crate) fn punch(&mut self, offset: usize, len: usize) -> io::Result<Mapping> {
        assert!(offset + len <= self.len);
        // SAFETY: A range inside our own mapping (`munmap` refuses one
        // that is not page-aligned).
        if unsafe { libc::munmap(self.ptr.add(offset).cast(), len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let tail = Mapping {
            // SAFETY: Still inside (or one past) our mapping.
            ptr: unsafe { self.ptr.add(offset + len) },
            len: self.len - offset - len,
        };
        self.len = offset;
        Ok(tail)
    }
}

/// `mmap(NULL, len, prot, flags, fd, offset)`.
pub(crate) fn map(
    fd: RawFd,
    offset: u64,
    len: usize,
    prot: i32,
    flags: i32,
) -> io::Result<Mapping> {
    // SAFETY: A fresh mapping at an address the kernel picks; nothing of
    // ours is replaced.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags,
            fd,
            offset as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

/// Anonymous memory: `mmap(NULL, len, prot, flags | MAP_ANONYMOUS, -1, 0)`.
pub(crate) fn map_anonymous(len: usize, prot: i32, flags: i32) -> io::Result<Mapping> {
    map(-1, 0, len, prot, flags | libc::MAP_ANONYMOUS)
}

/// Maps the control page of the ring on `fd` read-only.
pub(crate) fn map_control(fd: RawFd, layout: &RingLayout) -> io::Result<Mapping> {
    map(
        fd,
        0,
        layout.page_size as usize,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )
}

/// Maps the consumer page of the ring on `fd` read-write.
pub(crate) fn map_own_page(fd: RawFd, layout: &RingLayout) -> io::Result<Mapping> {
    map(
        fd,
        layout.consumer_offset,
        layout.page_size as usize,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
    )
}

/// Maps the data area of the ring on `fd` read-only.
pub(crate) fn map_data(fd: RawFd, layout: &RingLayout) -> io::Result<Mapping> {
    map(
        fd,
        layout.data_offset,
        layout.data_size as usize,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )
}
