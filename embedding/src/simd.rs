//! Loops with the widest vector instructions the CPU has.
//!
//! A release build targets the baseline of its architecture (on x86-64:
//! SSE2, four `f32` lanes), so the binary runs on any x86-64 machine. Most
//! machines have more: AVX2 (eight lanes) or AVX-512 (sixteen). A hot
//! element-wise loop can be compiled twice: once plainly, and once inside a
//! function marked `#[target_feature(enable = "avx512f")]`, where the
//! compiler vectorises it sixteen lanes wide; [`has_avx512`] picks one at
//! run time. The numbers are the same: the operations and their order do not
//! change, only how many run at once. (The matrix kernel in [`crate::gemm`]
//! goes further and writes its AVX-512 instructions by hand.)

/// Whether this CPU has AVX-512F (the answer is cached by the standard library).
#[inline(always)]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
