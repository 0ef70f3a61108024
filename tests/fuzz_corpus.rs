//! Replays the fuzz corpus kept in the repository (`fuzz/corpus/<target>`,
//! and `fuzz/regressions/<target>` for inputs that once crashed) through the
//! same functions the fuzz targets run (`shoal::fuzz`), with the stable
//! toolchain: every input must be handled without a panic. The fuzzers
//! themselves run with `bench/fuzz.sh`.

use std::path::Path;

#[test]
fn every_kept_fuzz_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, f) in shoal::fuzz::TARGETS {
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                let r = std::panic::catch_unwind(|| f(&data));
                assert!(
                    r.is_ok(),
                    "fuzz target {name} panics on {} (replay: cargo +nightly fuzz run {name} {0})",
                    e.path().display()
                );
                n += 1;
            }
        }
        assert!(n > 0, "fuzz target {name} has no kept corpus under fuzz/corpus/{name}");
        eprintln!("{name}: {n} inputs replayed");
    }
}
