//! Pre-allocated argon2 working memory: one region of `memory_kib` per permit of
//! the hashing semaphore (`argon2.max_concurrent`), so a burst of sign-ins never
//! asks the allocator for 19 MiB per hash (glibc keeps such freed blocks in its
//! per-thread arenas: issue 12 item 11).
//!
//! Regions are anonymous `mmap`s on Unix. They cost no resident memory until a
//! hash touches them, and `release_idle` hands the pages of regions unused for a
//! while back to the kernel (`MADV_DONTNEED`), so RSS returns to its idle level
//! after a burst. A checkout that finds the pool empty (only possible for a caller
//! outside the semaphore) or needs a larger region (a stored hash with a larger
//! `m` than configured) gets a one-off region, counted in `fallbacks`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::Block;

/// A zero-initialised, page-aligned array of argon2 blocks.
pub struct Region {
    ptr: std::ptr::NonNull<Block>,
    blocks: usize,
    /// Whether pages may be resident (touched since the last release).
    touched: bool,
    last_used: Instant,
}

// The region is plain memory owned by whoever holds the `Region`.
unsafe impl Send for Region {}

impl Region {
    fn bytes(blocks: usize) -> usize {
        (blocks * size_of::<Block>()).max(1)
    }

    #[cfg(unix)]
    pub fn new(blocks: usize) -> std::io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::bytes(blocks),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: std::ptr::NonNull::new(ptr.cast()).expect("mmap returned a non-null address"),
            blocks,
            touched: false,
            last_used: Instant::now(),
        })
    }

    #[cfg(not(unix))]
    pub fn new(blocks: usize) -> std::io::Result<Self> {
        let layout = std::alloc::Layout::from_size_align(Self::bytes(blocks), 4096).map_err(std::io::Error::other)?;
        // SAFETY: the layout has a non-zero size; checked for failure.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        Ok(Self {
            ptr: std::ptr::NonNull::new(ptr.cast()).ok_or_else(|| std::io::Error::other("out of memory"))?,
            blocks,
            touched: false,
            last_used: Instant::now(),
        })
    }

    pub fn len(&self) -> usize {
        self.blocks
    }

    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Gives the pages back to the kernel; the next use faults in zeroed pages.
    #[cfg(unix)]
    fn release(&mut self) {
        // SAFETY: the whole mapping, owned by this region and not borrowed (`&mut self`).
        unsafe {
            libc::madvise(self.ptr.as_ptr().cast(), Self::bytes(self.blocks), libc::MADV_DONTNEED);
        }
        self.touched = false;
    }

    #[cfg(not(unix))]
    fn release(&mut self) {
        self.touched = false;
    }
}

impl AsMut<[Block]> for Region {
    fn as_mut(&mut self) -> &mut [Block] {
        self.touched = true;
        self.last_used = Instant::now();
        // SAFETY: `blocks` blocks of zero-initialised (any bit pattern is a valid
        // `Block`), suitably aligned memory, exclusively borrowed through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.blocks) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: unmaps exactly the mapping created in `new`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), Self::bytes(self.blocks));
        }
        #[cfg(not(unix))]
        // SAFETY: deallocates with the layout used in `new`.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr().cast(),
                std::alloc::Layout::from_size_align_unchecked(Self::bytes(self.blocks), 4096),
            );
        }
    }
}

pub struct BlockPool {
    free: Mutex<Vec<Region>>,
    regions: usize,
    blocks: usize,
    fallbacks: AtomicU64,
}

/// A region checked out of the pool; it goes back when dropped.
pub struct Checkout<'a> {
    pool: &'a BlockPool,
    region: Option<Region>,
}

impl BlockPool {
    /// `regions` regions of `blocks` argon2 blocks (1 KiB each).
    pub fn new(regions: usize, blocks: usize) -> std::io::Result<Self> {
        let free = (0..regions)
            .map(|_| Region::new(blocks))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            free: Mutex::new(free),
            regions,
            blocks,
            fallbacks: AtomicU64::new(0),
        })
    }

    /// A region of at least `blocks` blocks.
    pub fn checkout(&self, blocks: usize) -> std::io::Result<Checkout<'_>> {
        let pooled = if blocks <= self.blocks {
            self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()
        } else {
            None
        };
        let region = match pooled {
            Some(region) => region,
            None => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                Region::new(blocks)?
            }
        };
        Ok(Checkout {
            pool: self,
            region: Some(region),
        })
    }

    /// One-off regions created because the pool had none to give (should stay 0).
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Returns the pages of free regions unused for `idle` to the kernel; the
    /// number of regions released.
    pub fn release_idle(&self, idle: Duration) -> usize {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let mut released = 0;
        for region in free.iter_mut().filter(|r| r.touched && r.last_used.elapsed() >= idle) {
            region.release();
            released += 1;
        }
        released
    }

    /// Regions whose pages may be resident (free or checked out is not told apart).
    pub fn touched(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.touched)
            .count()
    }
}

impl AsMut<[Block]> for Checkout<'_> {
    fn as_mut(&mut self) -> &mut [Block] {
        self.region.as_mut().expect("present until dropped").as_mut()
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(region) = self.region.take()
            && region.len() == self.pool.blocks
        {
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            // A one-off region of pool size while the pool was empty: keep the pool's size bounded.
            if free.len() < self.pool.regions {
                free.push(region);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_reused_and_bounded() {
        let pool = BlockPool::new(2, 64).unwrap();
        {
            let mut a = pool.checkout(64).unwrap();
            let mut b = pool.checkout(8).unwrap();
            a.as_mut()[0].as_mut()[0] = 7;
            b.as_mut()[63].as_mut()[127] = 9;
            assert_eq!(pool.fallbacks(), 0);
            // The pool is empty: a third caller gets a one-off region.
            let c = pool.checkout(64).unwrap();
            assert_eq!(pool.fallbacks(), 1);
            drop(c);
        }
        assert_eq!(pool.free.lock().unwrap().len(), 2, "the one-off region is not kept");
        // Larger than the pool's regions: a one-off region, never kept.
        let big = pool.checkout(65).unwrap();
        assert_eq!(big.region.as_ref().unwrap().len(), 65);
        drop(big);
        assert_eq!(pool.fallbacks(), 2);
        assert_eq!(pool.free.lock().unwrap().len(), 2);
    }

    #[test]
    fn idle_regions_are_released_and_usable_again() {
        let pool = BlockPool::new(1, 32).unwrap();
        pool.checkout(32).unwrap().as_mut()[5].as_mut()[3] = 42;
        assert_eq!(pool.touched(), 1);
        assert_eq!(pool.release_idle(Duration::from_secs(3600)), 0, "recently used");
        assert_eq!(pool.release_idle(Duration::ZERO), 1);
        assert_eq!(pool.touched(), 0);
        let mut again = pool.checkout(32).unwrap();
        #[cfg(unix)]
        assert_eq!(again.as_mut()[5].as_mut()[3], 0, "released pages come back zeroed");
        again.as_mut()[5].as_mut()[3] = 1;
    }
}
