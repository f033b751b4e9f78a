//! Keeping freed memory for the next training step.
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_setting_takes_effect_on_glibc() {
        let applied = super::keep_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
