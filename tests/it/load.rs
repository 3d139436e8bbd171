//! A short smoke run of the load harness (`jitgate-load`): it starts the real server, drives
//! every kind of request and reports without errors. The real runs are in docs/BENCHMARKS.md.

use std::process::Command;

use serde_json::Value;

use super::repo;

#[test]
fn the_load_harness_runs_a_short_mix_without_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_jitgate-load"))
        .args([
            "--server-binary",
            env!("CARGO_BIN_EXE_jitgate"),
            "--connections",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--mix",
            "allow=1,allow-key=1,deny=1,escalate=1",
            "--json",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["requests"].as_u64().unwrap() >= 4, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(report["server_rss_bytes"].as_u64().unwrap() > 0);

    let refused = Command::new(env!("CARGO_BIN_EXE_jitgate-load"))
        .args(["--mix", "allow=1,nonsense=2"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown kind `nonsense`"));
}
