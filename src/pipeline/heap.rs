//! Heap settings for a process that allocates and frees volumes of tens to hundreds of MB per
//! series (HU volume `[k, j, i]` f32, masks, meshes of millions of triangles).
//!
//! With glibc's defaults every block above 32 MiB is a fresh `mmap`, unmapped again when freed,
//! and free memory above 128 KiB at the top of a heap is given back at once, so each stage of
//! each series faults its pages in again and every unmap interrupts the other threads to flush
//! their TLBs. Page faults and unmaps were about a quarter of the CPU time of `osteon segment` on
//! the 140-slice Philips series. [`tune`] serves all blocks from the heaps and keeps freed memory
//! for reuse (measured there: 190 k -> 141 k page faults, CPU 3.5 -> 2.8 s, wall -0.3 to -0.4 s;
//! peak RSS 648 -> 827 MB, which is why only the node uses it); [`release`] gives the free memory
//! back to the OS when the node has been idle for a while. Other platforms and allocators: both
//! are no-ops.

/// Free memory at the top of a heap that is kept instead of trimmed (1 GiB: above the working
/// set of one series, so a series reuses the pages of the stage before it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Sets the process-wide malloc parameters (`mallopt(3)`: `M_MMAP_MAX` 0, so no block gets its
/// own mapping; `M_TRIM_THRESHOLD` 1 GiB; `M_ARENA_MAX` 1, so the worker threads share the heap
/// that keeps the memory). For `osteon serve`; call it first, before any thread starts. Returns
/// whether the C library took the settings.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_ARENA_MAX, 1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives the free memory of every heap back to the OS (`malloc_trim(0)`), for an idle node so
/// that the memory [`tune`] keeps between stages is not held between series.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
