//! A short smoke run of the load harness (`jitgate-load`, a package of its own that jitgate's
//! tests call as a library): it starts the real server, drives every kind of request and
//! reports without errors. The real runs are in docs/BENCHMARKS.md; the harness's own command
//! line is tested in its package.

use clap::Parser as _;
use serde_json::Value;

use super::repo;

/// Runs the harness with `args` against the `jitgate` binary of this build, from the
/// repository root (the shipped pack); its report as JSON, or its error.
async fn load(args: &[&str]) -> Result<Value, String> {
    let server = env!("CARGO_BIN_EXE_jitgate");
    let policies = repo().join("policies");
    let schemas = repo().join("schemas");
    let args = jitgate_load::Args::try_parse_from(
        ["jitgate-load", "--server-binary", server]
            .into_iter()
            .chain(["--policies", policies.to_str().unwrap()])
            .chain(["--schemas", schemas.to_str().unwrap()])
            .chain(args.iter().copied()),
    )
    .unwrap();
    let report = jitgate_load::run(args).await?;
    Ok(serde_json::to_value(report).unwrap())
}

/// A short run: two connections after a 200 ms warm-up, for `duration` with `mix`, and `extra`.
async fn short_run(duration: &str, mix: &str, extra: &[&str]) -> Result<Value, String> {
    let common = [
        "--connections",
        "2",
        "--duration",
        duration,
        "--warmup",
        "200ms",
        "--mix",
        mix,
    ];
    load(&[&common[..], extra].concat()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_harness_runs_a_short_mix_without_errors() {
    let mix = "allow=1,allow-key=1,deny=1,escalate=1";
    let report = short_run("1s", mix, &[]).await.unwrap();
    assert!(report["requests"].as_u64().unwrap() >= 4, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(report["server_rss_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_harness_reloads_a_generated_pack_under_load_and_samples_memory() {
    let extra = [
        "--extra-policies",
        "100",
        "--reload-every",
        "300ms",
        "--rss-after",
        "5",
    ];
    let report = short_run("3s", "allow=1", &extra).await.unwrap();
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
}

/// The bench switches exist only in `bench` builds (`cargo test --features bench`, as
/// `.ci/run` does for this module).
#[cfg(feature = "bench")]
#[tokio::test(flavor = "multi_thread")]
async fn the_stripped_endpoint_and_discarded_writes_serve_the_allow_request() {
    for extra in [&["--target", "stripped"][..], &["--discard-writes"][..]] {
        let report = short_run("1s", "allow=1", extra)
            .await
            .unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        assert!(report["requests"].as_u64().unwrap() >= 4, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
    }
}

/// Without the `bench` feature the server refuses the switches, and the harness says so.
#[cfg(not(feature = "bench"))]
#[tokio::test(flavor = "multi_thread")]
async fn a_build_without_the_bench_feature_refuses_the_bench_switches() {
    let error = load(&["--discard-writes"]).await.unwrap_err();
    assert!(error.contains("--bench-discard-writes"), "{error}");
    assert!(error.contains("exited before it was ready"), "{error}");
}
