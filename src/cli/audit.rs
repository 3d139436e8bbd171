//! `jitgate audit verify` and `jitgate audit export`: the audit trail read straight from the
//! store the configuration names (safe beside a running server: SQLite readers do not block it).

use std::io::Write as _;
use std::process::ExitCode;

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::audit::{AuditFilter, HEAD_EVENT, HeadClaims, HeadError, check_head};
use crate::config::Config;
use crate::store::Store;
use crate::token::KeyRing;

async fn open(config: &Config) -> Result<Store, ExitCode> {
    Store::open_existing(&config.database_url, &config.data_dir)
        .await
        .map_err(|e| {
            eprintln!("error: store: {e}");
            ExitCode::FAILURE
        })
}

/// Walks the chain and checks the signed heads in it (and `external`, a head kept outside):
/// exit 0 with the head to keep, or 1 naming what does not hold.
pub fn verify(config: &Config, external: Option<&str>) -> ExitCode {
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match open(config).await {
            Ok(store) => store,
            Err(code) => return code,
        };
        let report = match store.verify_audit().await {
            Err(e) => {
                eprintln!("error: store: {e}");
                return ExitCode::FAILURE;
            }
            Ok(Err(broken)) => {
                eprintln!("error: {broken}");
                return ExitCode::FAILURE;
            }
            Ok(Ok(report)) => report,
        };
        let checked = match public_keys(config, &store).await {
            Ok(keys) => match check_heads(&store, &keys).await {
                Ok(heads) => match external {
                    None => Ok((heads, None)),
                    Some(source) => check_external(&store, &keys, source)
                        .await
                        .map(|claims| (heads, Some(claims))),
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (heads, external) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
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
        if heads.checked == 0 {
            println!(
                "note: no signed head in the trail: events cut off its end, or deleted with the chain rebuilt, go unnoticed"
            );
        } else {
            println!("signed heads: {} checked", heads.checked);
        }
        if heads.retired > 0 {
            println!(
                "note: {} older signed heads were signed by keys no longer in the keys dir and were not checked",
                heads.retired
            );
        }
        if let Some(claims) = external {
            println!(
                "ok: the trail still holds the given head (seq {}, signed at {})",
                claims.seq, claims.iat
            );
        }
        ExitCode::SUCCESS
    })
}

/// The public keys signed heads are checked against: the database's when it keeps the
/// signing keys (no key-encryption key needed), else those in the keys dir.
async fn public_keys(config: &Config, store: &Store) -> Result<JwkSet, String> {
    if store.is_shared() {
        let keys = crate::access::keys::public_keys(store)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(JwkSet {
            keys: keys.into_iter().map(|(jwk, _)| jwk).collect(),
        });
    }
    let ring = KeyRing::read(&config.data_dir.join("keys")).map_err(|e| e.to_string())?;
    Ok(JwkSet {
        keys: ring.keys().iter().map(|k| k.public.clone()).collect(),
    })
}

/// How many signed heads in the trail were checked, and how many could not be (their key
/// was retired and deleted).
#[derive(Debug, Default)]
struct HeadsChecked {
    checked: u64,
    retired: u64,
}

/// Checks every `audit.head` event: a valid signature, and the chain still holding the
/// signed hash at the signed seq. The newest must be signed by a key in the keys dir.
async fn check_heads(store: &Store, keys: &JwkSet) -> Result<HeadsChecked, String> {
    let filter = AuditFilter {
        kind: Some(HEAD_EVENT.into()),
        ..AuditFilter::default()
    };
    let mut heads = HeadsChecked::default();
    let mut newest_retired = None;
    let mut after = i64::MIN;
    loop {
        let page = store
            .audit_page(&filter, after, 1_000)
            .await
            .map_err(|e| format!("store: {e}"))?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for event in &page {
            let jws = event.data.get("jws").and_then(Value::as_str).unwrap_or("");
            match check_head(jws, keys) {
                Err(HeadError::UnknownKey(_)) => {
                    heads.retired += 1;
                    newest_retired = Some(event.seq);
                }
                Err(e) => return Err(format!("the signed head kept at seq {}: {e}", event.seq)),
                Ok(claims) => {
                    newest_retired = None;
                    if claims.seq >= event.seq {
                        return Err(format!(
                            "the signed head kept at seq {} names seq {}, after it: events were deleted or rewritten and the chain rebuilt",
                            event.seq, claims.seq
                        ));
                    }
                    trail_holds(store, &claims)
                        .await
                        .map_err(|e| format!("the signed head kept at seq {}: {e}", event.seq))?;
                    heads.checked += 1;
                }
            }
        }
    }
    match newest_retired {
        Some(seq) => Err(format!(
            "the newest signed head (kept at seq {seq}) is signed by a key the keys dir does not hold"
        )),
        None => Ok(heads),
    }
}

/// Checks a head kept outside the trail (a file, or a URL to fetch it from).
async fn check_external(store: &Store, keys: &JwkSet, source: &str) -> Result<HeadClaims, String> {
    let jws = if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        client
            .get(source)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("--head {source}: {e}"))?
            .text()
            .await
            .map_err(|e| format!("--head {source}: {e}"))?
    } else {
        std::fs::read_to_string(source).map_err(|e| format!("--head {source}: {e}"))?
    };
    let claims = check_head(jws.trim(), keys).map_err(|e| format!("--head {source}: {e}"))?;
    trail_holds(store, &claims)
        .await
        .map_err(|e| format!("--head {source}: {e}"))?;
    Ok(claims)
}

/// Whether the event at the head's seq still carries the head's hash.
async fn trail_holds(store: &Store, claims: &HeadClaims) -> Result<(), String> {
    let stored = store
        .audit_hash_at(claims.seq)
        .await
        .map_err(|e| format!("store: {e}"))?;
    if stored.as_deref() == Some(claims.hash.as_str()) {
        return Ok(());
    }
    Err(format!(
        "signed at {} for seq {} with hash {}, but the trail {}: events were deleted or rewritten and the chain rebuilt",
        claims.iat,
        claims.seq,
        claims.hash,
        stored.map_or_else(
            || "has no such event".to_owned(),
            |hash| format!("has hash {hash} there")
        ),
    ))
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
