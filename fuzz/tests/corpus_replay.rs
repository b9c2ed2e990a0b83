//! Replays every committed fuzz input (`corpus/<target>/*`, crash reproducers included) through
//! its target's body on the stable toolchain, so `make test` and CI keep every property the
//! fuzzers checked, without libFuzzer.

use std::path::Path;

#[test]
fn every_committed_input_passes_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, body) in molt_fuzz::TARGETS {
        let dir = corpus.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .map(|entry| entry.expect("read a corpus entry").path())
            .collect();
        inputs.sort();
        assert!(
            !inputs.is_empty(),
            "{target}: empty corpus, seed it (see fuzz/README.md)"
        );
        for input in inputs {
            let data =
                std::fs::read(&input).unwrap_or_else(|err| panic!("{}: {err}", input.display()));
            // A panic names the input, so a failure can be rerun with `cargo fuzz run <target> <file>`.
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(
                outcome.is_ok(),
                "{target}: input {} broke a property",
                input.display()
            );
        }
    }
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    for (target, _) in molt_fuzz::TARGETS {
        assert!(
            targets.join(format!("{target}.rs")).is_file(),
            "{target} has no fuzz_targets/{target}.rs"
        );
    }
}
