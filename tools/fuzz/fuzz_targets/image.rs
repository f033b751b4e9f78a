#![no_main]

// every allocation counted: an input that makes the loader hold more than
// its target's limit at once is a crash, like a panic
#[global_allocator]
static ALLOCATOR: train::memory::Counting = train::memory::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_loaders::check("image", data));
