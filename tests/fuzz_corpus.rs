//! Replays every committed fuzz corpus file (`fuzz/corpus/TARGET/*`, including
//! the regression inputs of past findings) through the same entry points the
//! fuzz targets call, on stable: a parser that panics or breaks an invariant
//! on any of them fails here, without a fuzzing toolchain.

use std::path::Path;

use byok_ceremony::fuzzing::all_targets;

#[test]
fn every_target_has_a_corpus_and_replays_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in all_targets() {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!("no corpus for fuzz target {name} at {}: {e}", dir.display())
            })
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of {name} is empty");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {name} fails on {}",
                f.display()
            );
        }
    }
}
