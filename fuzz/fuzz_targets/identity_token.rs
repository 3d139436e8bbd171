//! The input as a bearer token, through the authenticator every request passes (dev issuer on).
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jitgate::config::Config;
use jitgate::identity::Authenticator;
use tempfile::TempDir;
use tokio::runtime::Runtime;

fn setup() -> &'static (Runtime, TempDir, Authenticator) {
    static SETUP: OnceLock<(Runtime, TempDir, Authenticator)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = TempDir::new().unwrap();
        let mut config = Config::quickstart();
        config.data_dir = dir.path().join("data");
        let auth = runtime
            .block_on(Authenticator::from_config(&config, now()))
            .unwrap();
        (runtime, dir, auth)
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (runtime, _, auth) = setup();
    let header = format!("Bearer {}", String::from_utf8_lossy(data));
    // Nothing but a token the dev issuer signed may pass; a panic or a hang is a finding.
    let _ = runtime.block_on(auth.authenticate(Some(&header), now()));
});
