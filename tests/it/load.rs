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

#[test]
fn the_load_harness_reloads_a_generated_pack_under_load_and_samples_memory() {
    let output = Command::new(env!("CARGO_BIN_EXE_jitgate-load"))
        .args([
            "--server-binary",
            env!("CARGO_BIN_EXE_jitgate"),
            "--connections",
            "2",
            "--duration",
            "3s",
            "--warmup",
            "200ms",
            "--mix",
            "allow=1",
            "--extra-policies",
            "100",
            "--reload-every",
            "300ms",
            "--rss-after",
            "5",
            "--json",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    let reloads = &report["during_reloads"];
    assert!(reloads["pack_rewrites"].as_u64().unwrap() >= 2, "{report}");
    // Every rewrite is a new version; the watcher may fold rewrites close together into one.
    assert!(
        reloads["reloads_applied"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(
        reloads["before_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        reloads["during_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let (count, rss) = (
        &report["server_rss_bytes_after"][0],
        &report["server_rss_bytes_after"][1],
    );
    assert_eq!(count, 5, "{report}");
    assert!(rss.as_u64().unwrap() > 0, "{report}");

    let refused = Command::new(env!("CARGO_BIN_EXE_jitgate-load"))
        .args(["--reload-every", "1s"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("give --extra-policies"));
}

/// The bench switches exist only in `bench` builds (`cargo test --features bench`, as
/// `.ci/run` does for this module).
#[cfg(feature = "bench")]
#[test]
fn the_stripped_endpoint_and_discarded_writes_serve_the_allow_request() {
    for extra in [&["--target", "stripped"][..], &["--discard-writes"][..]] {
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
                "allow=1",
                "--json",
            ])
            .args(extra)
            .current_dir(repo())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{extra:?}: {stderr}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(report["requests"].as_u64().unwrap() >= 4, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
    }
}

/// Without the `bench` feature the server refuses the switches, and the harness says so.
#[cfg(not(feature = "bench"))]
#[test]
fn a_build_without_the_bench_feature_refuses_the_bench_switches() {
    let output = Command::new(env!("CARGO_BIN_EXE_jitgate-load"))
        .args([
            "--server-binary",
            env!("CARGO_BIN_EXE_jitgate"),
            "--discard-writes",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--bench-discard-writes"), "{stderr}");
    assert!(stderr.contains("exited before it was ready"), "{stderr}");
}
