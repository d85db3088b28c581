//! A cache hint: [`prefetch`] asks the processor to bring a value's cache line in ahead of its
//! use, so a read that would miss the cache overlaps the work done before it.
//!
//! The core updates a hash-tree leaf on every write of a record, and the leaves (a few
//! kilobytes per partition, read at random) are rarely in cache: the core prefetches the leaf
//! when the write starts, and the miss goes on while the record is read, merged and encoded.
//! A plain early read would not do: the processor cannot retire it, nor anything after it,
//! before the line arrives.
//!
//! Beside the allocator (`crates/alloc`), the one other `unsafe` of the workspace: the
//! intrinsic is unsafe to call, though a prefetch never faults and changes no state a program
//! can observe (it is a hint; on other targets this is a no-op).

/// Hints that `value`'s cache line will be read soon.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE (which the intrinsic needs) is part of every x86-64 target, and a prefetch
    // of any address, here a live reference's, neither faults nor writes.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    /// A hint changes nothing: the values read after it are the values written.
    #[test]
    fn a_prefetch_leaves_values_as_they_are() {
        let values: Vec<u64> = (0..4096).map(|i| i * 7).collect();
        for i in (0..values.len()).rev().step_by(61) {
            super::prefetch(&values[i]);
            assert_eq!(values[i], i as u64 * 7);
        }
    }
}
