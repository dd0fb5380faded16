//! The broker's global allocator: the system allocator, except that very large requests are
//! served by `mmap` with `MAP_NORESERVE`.
//!
//! Why: the `kafka-protocol` crate (0.18) sizes `Vec::with_capacity` from array lengths read off
//! the wire before decoding a single element. A request of a few bytes that declares two
//! billion elements asks for hundreds of GiB up front; the system allocator refuses, and Rust
//! aborts the process on a failed allocation. Upstream fixes exist as open pull requests. Until
//! one is released, huge reservations are made without committing memory: the kernel hands out
//! address space, only pages actually written use memory, and the decoder fails on the short
//! input and frees the reservation. Legitimate allocations of this size (a fetch response or
//! request of hundreds of MiB) behave the same as before, only without up-front accounting.
//!
//! This is the one module allowed `unsafe`: it implements `GlobalAlloc`, whose contract is
//! unsafe by definition. Review it as such.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests of at least this many bytes are reserved with `MAP_NORESERVE`.
pub const HUGE_ALLOCATION: usize = 256 << 20;

/// Page size bound: `mmap` returns page-aligned memory, so alignments up to this are honoured.
const MMAP_ALIGN: usize = 4096;

/// See the module docs.
pub struct Allocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION && layout.align() <= MMAP_ALIGN
}

// SAFETY: every pointer handed out is either from `System` (and returned to `System`) or from
// `mmap` of at least `layout.size()` bytes, page-aligned (≥ the requested alignment, checked by
// `is_huge`), and returned with `munmap` of the same length. Which path a pointer took is a pure
// function of its layout, which the caller must pass unchanged to `dealloc`.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous private mapping, no file; the result is checked.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled by the kernel.
            // SAFETY: as `alloc`.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `mmap` of `layout.size()` bytes (see `alloc`).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides stay with `System`; forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing between the two allocators: allocate, copy, free.
        // SAFETY: `new_layout` is valid; the copy stays within both allocations; `ptr` is
        // freed with the layout it was allocated with.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn absurd_reservations_succeed_without_using_memory() {
        // 512 GiB: far more than this machine has; only the touched pages are real.
        let mut v: Vec<u64> = Vec::with_capacity(64 << 30);
        v.extend([1, 2, 3]);
        assert_eq!(v.iter().sum::<u64>(), 6);
        v.shrink_to_fit();
        assert_eq!(v, [1, 2, 3]);
        let mut w: Vec<u8> = Vec::with_capacity(1000);
        w.resize(super::HUGE_ALLOCATION + 1, 7); // grows across into the mmap path
        assert_eq!(w[super::HUGE_ALLOCATION], 7);
    }
}
