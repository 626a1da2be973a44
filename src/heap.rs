//! The process heap (glibc's allocator on Linux): how many arenas it may keep,
//! and handing free pages back to the kernel. Elsewhere both do nothing.
//!
//! Why: glibc gives each thread that allocates under contention an arena of its
//! own, up to eight per core. On SQLite the pooled connections move between
//! tokio's blocking threads, and every write by another connection empties a
//! connection's page cache (WAL mode), so pages are allocated on one thread's
//! arena and freed from another's. A 12-minute soak on SQLite with 16 arenas
//! grew the anonymous RSS by about 1 MB a minute while SQLite's own allocator
//! stayed at 5–9 MB.

/// Arenas allowed unless `MALLOC_ARENA_MAX` is set in the environment.
pub const ARENAS: i32 = 2;

/// Caps glibc's arenas at `ARENAS` (or leaves `MALLOC_ARENA_MAX` to decide). Call
/// first thing in `main`, before any other thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a parameter of the allocator; called before
        // other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Asks glibc to return free heap memory to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
