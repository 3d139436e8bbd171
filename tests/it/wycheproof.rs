//! Project Wycheproof's JWS vectors against jitgate's signature check: every case with a public
//! key of an algorithm jitgate accepts must be accepted exactly when it is valid.

use std::collections::BTreeSet;

use jitgate::identity::jwt::verify_signature;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;

use super::repo;

/// Every asymmetric algorithm an identity issuer may be pinned to.
const ACCEPTED: [Algorithm; 9] = jitgate::identity::jwt::ASYMMETRIC_ALGORITHMS;

/// Known label errors in the file: tc367 and tc370 are byte-identical to the valid tc357 but
/// labelled invalid; tc372 and tc373 contain a `?` but are labelled valid.
const MISLABELLED: [u64; 4] = [367, 370, 372, 373];

/// Valid in the file, rejected by jitgate on purpose: RFC 7520 figure 20 signs with PS384 under
/// a key whose JWK says `"alg": "PS256"`. jitgate holds a key to the algorithm its JWK names
/// (RFC 8725 §3.1), so a token cannot pick another algorithm for a published key.
const REJECTED_ON_PURPOSE: [u64; 2] = [346, 350];

#[test]
fn jws_vectors() {
    let path = repo().join("tests/data/wycheproof/json_web_signature_test.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    let mut valid_accepted = 0;
    let mut wrong = Vec::new();
    let mut skipped_algs = BTreeSet::new();
    for group in file["testGroups"].as_array().unwrap() {
        let Some(public) = group.get("public") else {
            continue; // MAC or private-key-only groups: jitgate never accepts symmetric keys.
        };
        let alg = public.get("alg").and_then(Value::as_str).unwrap_or("");
        // A key without `alg` is tried with every accepted algorithm.
        if !alg.is_empty() && !ACCEPTED.iter().any(|a| format!("{a:?}") == alg) {
            skipped_algs.insert(alg.to_owned());
            continue;
        }
        let jwk: Option<Jwk> = serde_json::from_value(public.clone()).ok();
        for case in group["tests"].as_array().unwrap() {
            let Some(jws) = case["jws"].as_str() else {
                continue; // JSON serialization: jitgate takes compact tokens only.
            };
            let id = case["tcId"].as_u64().unwrap();
            let mut expected = case["result"] == "valid";
            if MISLABELLED.contains(&id) {
                expected = !expected;
            }
            if REJECTED_ON_PURPOSE.contains(&id) {
                expected = false;
            }
            let accepted = jwk
                .as_ref()
                .is_some_and(|jwk| verify_signature(jws, jwk, &ACCEPTED).is_ok());
            checked += 1;
            if accepted && expected {
                valid_accepted += 1;
            }
            if accepted != expected {
                wrong.push(format!(
                    "tc{id} ({}): expected {}, got {}",
                    case["comment"],
                    if expected { "accept" } else { "reject" },
                    if accepted { "accept" } else { "reject" }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 300, "only {checked} cases checked");
    assert!(
        valid_accepted >= 20,
        "only {valid_accepted} valid cases accepted"
    );
    eprintln!(
        "wycheproof JWS: {checked} cases, {valid_accepted} valid accepted; algorithms not accepted by jitgate, skipped: {skipped_algs:?}"
    );
}
