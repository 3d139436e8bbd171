//! Robustness: arbitrary and mutated input thrown at the parsers that face the outside — the
//! bodies of `POST /v1/access-requests`, `POST /v1/decisions` and `POST /oauth2/token`,
//! identity tokens, policy packs and policy test-case files. Each must answer with a clear error, never panic or 500.
//!
//! Every target runs [`DEFAULT_CASES`] cases; `PROPTEST_CASES=1000000 cargo test --release
//! --test robustness packs` runs a long one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed step should fail the test loudly"
)]

mod bodies;
mod case_files;
mod mutation;
mod oauth;
mod packs;
mod tokens;

use std::path::Path;

use proptest::test_runner::Config as ProptestConfig;

/// Cases per target unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 10_000;

fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        // A failure prints its minimal input; it is kept as a named test, not in a side file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The repository root, where the shipped `policies/` and `schemas/` live.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
