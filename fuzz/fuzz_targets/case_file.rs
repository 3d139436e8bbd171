//! `jitgate test` on the input as a case file, against the shipped pack.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jitgate::decision::GrantDefaults;
use jitgate::policy::{PackPaths, PolicyPack};
use tempfile::TempDir;

fn setup() -> &'static (PolicyPack, TempDir, PathBuf) {
    static SETUP: OnceLock<(PolicyPack, TempDir, PathBuf)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let pack =
            PolicyPack::load(&PackPaths::new(repo.join("policies"), repo.join("schemas"))).unwrap();
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("cases.toml");
        (pack, dir, file)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (pack, _, file) = setup();
    std::fs::write(file, data).unwrap();
    let report =
        jitgate::policytest::run(pack, std::slice::from_ref(file), &GrantDefaults::default());
    assert!(
        report
            .file_errors
            .iter()
            .all(|(_, message)| !message.is_empty())
    );
});
