//! A pack load (`jitgate check`) with the input as one more `.cedar` file beside the shipped pack.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use jitgate::policy::{PackPaths, PolicyPack};
use tempfile::TempDir;

fn pack() -> &'static (TempDir, PackPaths) {
    static PACK: OnceLock<(TempDir, PackPaths)> = OnceLock::new();
    PACK.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = TempDir::new().unwrap();
        let paths = PackPaths::new(dir.path().join("policies"), dir.path().join("schemas"));
        for (from, to) in [("policies", &paths.policies), ("schemas", &paths.schemas)] {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(repo.join(from)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        (dir, paths)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (_, paths) = pack();
    std::fs::write(paths.policies.join("fuzz.cedar"), data).unwrap();
    if let Err(errors) = PolicyPack::load(paths) {
        assert!(errors.0.iter().all(|e| !e.message.is_empty()));
    }
});
