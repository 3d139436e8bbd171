//! The OAuth surface driven by a client library nobody here wrote: `tests/oauth/authlib_client.py`
//! (Python, authlib) against a live server.
//!
//! Needs a Python with `authlib` and `requests`, named by `JITGATE_TEST_PYTHON` (`.ci/run` makes
//! one in `target/ci-tools/venv`). Without it the test is skipped with a message, unless
//! `JITGATE_TEST_REQUIRE_PYTHON=1` (set by `.ci/run`) makes it fail instead.

use std::process::Command;

use super::harness::TestServer;
use super::{TempPack, repo};

/// Every check the script prints when it passes.
const CHECKS: [&str; 10] = [
    "client credentials with client_secret_basic",
    "introspection and revocation with client_secret_basic",
    "client credentials with client_secret_post",
    "introspection and revocation with client_secret_post",
    "client credentials with private_key_jwt",
    "introspection and revocation with private_key_jwt",
    "token exchange with authorization_details",
    "an escalated request polled to its token after approval",
    "errors carry the RFC error codes",
    "DPoP with a library-generated proof",
];

#[tokio::test]
async fn authlib_drives_every_grant_and_client_authentication() {
    let Some(python) = std::env::var_os("JITGATE_TEST_PYTHON") else {
        let why = "no Python with authlib (set JITGATE_TEST_PYTHON; .ci/run makes a venv)";
        assert!(
            std::env::var("JITGATE_TEST_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "{why}, and JITGATE_TEST_REQUIRE_PYTHON=1"
        );
        super::skipped("authlib_drives_every_grant_and_client_authentication", why);
        return;
    };
    let keys = tempfile::TempDir::new().unwrap();
    let signer = super::oauth::ClientKey::new(keys.path(), "signer");
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.identity.api_keys.push(signer.signer());
    })
    .await;
    let mut command = Command::new(python);
    command
        .arg(repo().join("tests/oauth/authlib_client.py"))
        .env("JITGATE_BASE", &server.base)
        .env("JITGATE_DEPLOYER_SECRET", "jg_deploy-secret")
        .env(
            "JITGATE_ALICE_TOKEN",
            server.dev_token("alice", &["oncall"], true),
        )
        .env(
            "JITGATE_DORA_TOKEN",
            server.dev_token("dora", &["dba"], true),
        )
        .env("JITGATE_SIGNER_KEY", &signer.pem)
        .env("JITGATE_SIGNER_KID", &signer.kid);
    // authlib stamps its client assertions and DPoP proofs with the real time.
    let ticking = server.follow_real_time();
    // On a thread of its own: the server answers the script on this test's runtime.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    ticking.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for check in CHECKS {
        assert!(
            stdout.contains(&format!("ok: {check}\n")),
            "`{check}` did not pass:\n{stdout}\n{stderr}"
        );
    }
}
