//! Memory: keeping freed memory for the next training step, and knowing
//! before a command starts whether what it is asked to do fits.
//!
//! ## Keeping freed memory
//!
//! Every layer returns fresh arrays (that is the layer contract: a forward
//! pass returns its output and a cache, a backward pass returns the input's
//! gradient), so one step of the tiny model allocates and frees a few hundred
//! arrays of 0.1 to 4 MB, the same sizes every step.
//!
//! glibc's `malloc` serves a block that large with `mmap` and hands it back
//! to the operating system on `free` (and trims the free top of its heap as
//! well). The next step then asks for the same sizes again, and the kernel
//! maps fresh pages, zeroes them and takes a page fault on each first touch:
//! close to a tenth of a ViT step on one thread, all of it in the kernel.
//! [`keep_freed_memory`] raises both thresholds, so freed blocks stay in the
//! process and the next step reuses them. The program's peak memory does
//! not change; it is only kept instead of given back between steps.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

// ANCHOR: keep_freed_memory
/// Asks the C library to keep freed blocks of up to 32 MiB for reuse instead
/// of returning them to the operating system. Call it once, before training.
/// It does nothing outside Linux with glibc, where `malloc` behaves
/// otherwise; returns whether the setting took effect.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        unsafe extern "C" {
            /// glibc: `int mallopt(int param, int value)`, 1 on success.
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        const M_TRIM_THRESHOLD: c_int = -1; // free heap top kept before trimming
        const M_MMAP_THRESHOLD: c_int = -3; // smallest block served by mmap
        // SAFETY: mallopt only changes two numbers in malloc's settings, and
        // both values are within the ranges glibc documents
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
// ANCHOR_END: keep_freed_memory

// ANCHOR: counting
/// A global allocator that counts the bytes allocated and not yet freed,
/// and the most there ever were: how the program measures what a training
/// step needs ([`step_bytes`]) and how the tests check that a loader stays
/// under a limit. The `train` program installs it:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: train::memory::Counting = train::memory::Counting;
/// ```
///
/// Counting costs two atomic additions per allocation; a training step
/// makes a few hundred.
pub struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are plain atomics that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        IN_USE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            IN_USE.fetch_sub(layout.size(), Relaxed);
            added(new_size);
        }
        q
    }
}

fn added(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
}

/// Runs `f` and returns its result with the most bytes in use at once
/// while it ran, above what was in use when it started; `None` for the
/// bytes when [`Counting`] is not the global allocator. Allocations of
/// other threads in the meantime count too.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let start = IN_USE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let value = f();
    let peak = PEAK.load(Relaxed).saturating_sub(start) as u64;
    (value, INSTALLED.load(Relaxed).then_some(peak))
}
// ANCHOR_END: counting

// ANCHOR: available
/// The memory this process can still use, in bytes: the smaller of the
/// kernel's estimate of what can be allocated without swapping
/// (`MemAvailable` in `/proc/meminfo`) and what the control group's limit
/// leaves (`memory.max − memory.current`, when one is set), or 4 GiB where
/// neither is known. The environment variable `TRAIN_MEMORY_MB` replaces
/// the estimate (to plan for another machine, and in tests).
pub fn available_bytes() -> u64 {
    if let Some(mb) = std::env::var("TRAIN_MEMORY_MB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return mb.saturating_mul(1 << 20);
    }
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let meminfo = read("/proc/meminfo").and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    });
    let number = |path: &str| read(path).and_then(|t| t.trim().parse::<u64>().ok());
    let cgroup = number("/sys/fs/cgroup/memory.max") // "max" when there is no limit: None
        .map(|max| max.saturating_sub(number("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 4 << 30,
    }
}
// ANCHOR_END: available

/// Bytes as people read them: `812 B`, `3.4 MB`, `1.2 GB`, `713 TB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", units[unit])
    } else {
        format!("{value:.0} {}", units[unit])
    }
}

/// Something a command was asked to do would not fit in memory: refused
/// before it starts, with what would fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryError {
    /// What was asked (`a training step of 1000000 images`).
    pub what: String,
    /// Bytes it needs, estimated.
    pub needed: u64,
    /// Bytes available ([`available_bytes`]).
    pub available: u64,
    /// What would fit, naming the flag to change.
    pub fits: String,
}

impl std::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} needs about {} of memory, but about {} is available; {}",
            self.what,
            human(self.needed),
            human(self.available),
            self.fits
        )
    }
}

impl std::error::Error for MemoryError {}

/// `Err` if `count` items of `per_item` bytes (plus `fixed`) need more than
/// `available`; the error says how many would fit. `what(count)` describes
/// the request, `fits(n)` the largest that fits.
pub fn check_items(
    count: u64,
    per_item: u64,
    fixed: u64,
    available: u64,
    what: impl Fn(u64) -> String,
    fits: impl Fn(u64) -> String,
) -> Result<(), MemoryError> {
    let needed = count.saturating_mul(per_item).saturating_add(fixed);
    if needed <= available {
        return Ok(());
    }
    let most = available.saturating_sub(fixed) / per_item.max(1);
    Err(MemoryError {
        what: what(count),
        needed,
        available,
        fits: fits(most),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_setting_takes_effect_on_glibc() {
        let applied = super::keep_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::human(812), "812 B");
        assert_eq!(super::human(3_400_000), "3.4 MB");
        assert_eq!(super::human(713_000_000_000_000), "713 TB");
        assert_eq!(super::human(u64::MAX), "18 EB");
    }

    #[test]
    fn a_request_too_large_says_what_fits() {
        let e = super::check_items(
            1_000_000,
            1_000,
            500,
            10_500,
            |n| format!("{n} things"),
            |n| format!("at most {n} fit"),
        )
        .unwrap_err();
        assert_eq!(e.fits, "at most 10 fit");
        assert!(
            e.to_string()
                .starts_with("1000000 things needs about 1.0 GB of memory, but about 10 kB"),
            "{e}"
        );
        assert!(
            super::check_items(10, 1_000, 500, 10_500, |_| String::new(), |_| String::new())
                .is_ok()
        );
        // no overflow at the extremes
        assert!(
            super::check_items(
                u64::MAX,
                u64::MAX,
                u64::MAX,
                1,
                |_| String::new(),
                |_| String::new()
            )
            .is_err()
        );
    }
}
