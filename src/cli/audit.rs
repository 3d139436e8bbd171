//! `jitgate audit verify` and `jitgate audit export`: the audit trail read straight from the
//! store the configuration names (safe beside a running server: SQLite readers do not block it).

use std::io::Write as _;
use std::process::ExitCode;

use crate::audit::AuditFilter;
use crate::config::Config;
use crate::store::Store;

async fn open(config: &Config) -> Result<Store, ExitCode> {
    Store::open(&config.database_url, &config.data_dir)
        .await
        .map_err(|e| {
            eprintln!("error: store: {e}");
            ExitCode::FAILURE
        })
}

/// Walks the chain: exit 0 with the head to keep, or 1 naming the first broken event.
pub fn verify(config: &Config) -> ExitCode {
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match open(config).await {
            Ok(store) => store,
            Err(code) => return code,
        };
        match store.verify_audit().await {
            Err(e) => {
                eprintln!("error: store: {e}");
                ExitCode::FAILURE
            }
            Ok(Err(broken)) => {
                eprintln!("error: {broken}");
                ExitCode::FAILURE
            }
            Ok(Ok(report)) => {
                let head = report.head.map_or_else(
                    || "no chained events yet".to_owned(),
                    |(seq, hash)| format!("head seq {seq} hash {hash}"),
                );
                println!("ok: {} events, {head}", report.events);
                if report.unchained > 0 {
                    println!(
                        "note: the first {} events predate the chain and are not covered by it",
                        report.unchained
                    );
                }
                ExitCode::SUCCESS
            }
        }
    })
}

/// Writes the events in `[since, until)` as JSON lines on stdout, oldest first.
pub fn export(config: &Config, filter: AuditFilter) -> ExitCode {
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match open(config).await {
            Ok(store) => store,
            Err(code) => return code,
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut after = i64::MIN;
        loop {
            let page = match store.audit_page(&filter, after, 1_000).await {
                Ok(page) => page,
                Err(e) => {
                    eprintln!("error: store: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            for event in &page {
                let line = serde_json::to_string(event).unwrap_or_default();
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::FAILURE;
                }
            }
        }
        if out.flush().is_err() {
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    })
}
