//! Fuzz targets for every loader of user files: each function takes any
//! bytes and must return (an error or a value), never panic, and stay
//! under the memory its entry in [`targets::TARGETS`] allows.
pub mod targets;

/// Runs target `name` on `data` and fails (panics, which libFuzzer reports
/// as a crash and saves the input of) if it held more memory at once than
/// its limit. The fuzz binaries install [`train::memory::Counting`].
pub fn check(name: &str, data: &[u8]) {
    let &(_, f, cap_mib) = targets::TARGETS
        .iter()
        .find(|t| t.0 == name)
        .expect("a listed target");
    let ((), peak) = train::memory::peak_during(|| f(data));
    let peak = peak.unwrap_or(0);
    assert!(
        peak <= cap_mib << 20,
        "{name}: {} MiB at once, more than {cap_mib}",
        peak >> 20
    );
}
