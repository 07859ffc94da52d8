//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`, grown by `cargo fuzz`)
//! through the same checks the fuzz targets run (`fuzz/src/lib.rs`), as a plain test: CI
//! needs no fuzzer build and no nightly flags. See `fuzz/README.md`.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn fails(check: fn(&[u8]), file: &Path) -> bool {
    let data = std::fs::read(file).unwrap();
    std::panic::catch_unwind(|| check(&data)).is_err()
}

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (target, check) in fuzz_checks::TARGETS {
        let files = files(&root.join(target));
        assert!(!files.is_empty(), "fuzz/corpus/{target}: empty corpus");
        for file in &files {
            assert!(!fails(*check, file), "{target}: {} fails", file.display());
        }
        total += files.len();
    }
    println!("{total} corpus inputs replayed");
}

/// The reproducers of findings not fixed yet (`fuzz/findings/<target>/`) still fail with
/// `TRACECAST_FUZZ_OPEN_FINDINGS=1`. Once a fix makes one pass, move it into the corpus.
#[test]
#[ignore = "open findings: run with --ignored and TRACECAST_FUZZ_OPEN_FINDINGS=1"]
fn open_findings_still_reproduce() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/findings");
    for (target, check) in fuzz_checks::TARGETS {
        for file in files(&root.join(target)) {
            println!(
                "{target}: {} fails: {}",
                file.display(),
                fails(*check, &file)
            );
        }
    }
}
