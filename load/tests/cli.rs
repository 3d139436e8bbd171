//! `jitgate-load`'s command line refuses what it cannot run, before starting any server (the
//! runs against a server are in jitgate's tests, `tests/it/load.rs`, which have its binary).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step should fail the test loudly"
)]

use std::process::Command;

fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_jitgate-load"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{args:?}");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn an_unknown_kind_in_the_mix_is_refused() {
    let stderr = refused(&["--mix", "allow=1,nonsense=2"]);
    assert!(stderr.contains("unknown kind `nonsense`"), "{stderr}");
}

#[test]
fn reloads_without_generated_policies_are_refused() {
    let stderr = refused(&["--reload-every", "1s"]);
    assert!(stderr.contains("give --extra-policies"), "{stderr}");
}
