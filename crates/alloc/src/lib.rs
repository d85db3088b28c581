//! The binaries' global allocator: mimalloc, entered through its plain `malloc` wherever the
//! layout allows.
//!
//! The simulator and the node allocate and free small, short-lived objects on every message,
//! and mimalloc runs them measurably faster than the system allocator (see ARCHITECTURE.md).
//! The `mimalloc` crate's allocator passes every request to `mi_malloc_aligned`, whose fast
//! path works only when the next free block happens to be aligned and falls back to a slower,
//! over-allocating path otherwise; but Rust's layouts almost all ask for no more alignment than
//! any block of their size has (at most 16 bytes, and no more than the size). Those go to
//! `mi_malloc`, as the system allocator's own Rust wrapper sends them to `malloc`; the rest to
//! the aligned entry points. The simulator's benchmark runs about 14 % faster with this.
//!
//! The one `unsafe` of the workspace: the allocator interface is unsafe by definition.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment of every plain mimalloc block of at least this size (its `MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// Whether a block of `size` bytes from the plain entry points is aligned enough for `align`.
/// On 64-bit targets mimalloc's size classes above one word are whole multiples of 16 bytes and
/// start 16-aligned, the one-word class is 8-aligned: so a block is aligned to 16 bytes or to its
/// size, whichever is less (the rule Rust's own `malloc` wrapper relies on).
#[inline]
fn plain_is_aligned(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// mimalloc behind Rust's global allocator interface.
pub struct Allocator;

// SAFETY: every method hands the request to the mimalloc entry point that honours its layout
// (plain where `plain_is_aligned` says the plain block is aligned enough, aligned otherwise);
// mimalloc's `mi_free` and `mi_realloc` accept blocks from either family.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions accept any size; null means out of memory.
        unsafe {
            if plain_is_aligned(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain_is_aligned(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the trait's contract), so from mimalloc.
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the trait's contract); the new
        // block keeps the alignment the layout asks for, as `alloc` would give it.
        unsafe {
            if plain_is_aligned(layout.align(), new_size) {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_gets_a_block_aligned_as_asked_and_keeps_its_bytes() {
        let a = Allocator;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [
                1usize, 2, 3, 7, 8, 9, 15, 16, 17, 24, 100, 1024, 5000, 100_000,
            ] {
                let layout = Layout::from_size_align(size, align).expect("a valid layout");
                // SAFETY: a non-zero size; every block is freed with its layout below.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alloc {size} bytes aligned {align}");
                    p.write_bytes(0xab, size);
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "realloc {size} aligned {align}");
                    assert!(
                        (0..size).all(|i| *grown.add(i) == 0xab),
                        "realloc kept the bytes"
                    );
                    let grown_layout = Layout::from_size_align(size * 3, align).expect("valid");
                    a.dealloc(grown, grown_layout);
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "alloc_zeroed {size} aligned {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0), "alloc_zeroed zeroes");
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
