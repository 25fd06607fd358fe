//! `cargo +nightly fuzz run objects`: every GVariant and object parser over the same bytes.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trellis_fuzz::check(data));
