//! Binding a token to a DPoP key (RFC 9449): a client that sends a proof with its token
//! request gets a token bound to the proof's key (`cnf.jkt`), usable only with fresh proofs
//! of that key. A proof is good for one request: its `jti` is kept (on every replica) until
//! the proof is too old to be accepted anyway.

use jitgate_verify::dpop::{Expected, PROOF_WINDOW_SECS, check_proof};

use super::{ApiError, App};
use crate::clock::stored_secs;
use crate::identity::jwt::LEEWAY_SECS;
use crate::store::{StoreError, Write};

/// The kind under which proof `jti`s are remembered ([`Write::UseOnce`]).
const USED_PROOF: &str = "dpop proof";

/// The thumbprint of the key `proof` proves, checked for a `method` request to `path` of this
/// server (its issuer URL) and never accepted twice; 400 `invalid_dpop_proof` otherwise.
pub async fn proven_key(
    app: &App,
    proof: &str,
    method: &str,
    path: &str,
) -> Result<String, ApiError> {
    let url = format!("{}{path}", app.tokens.issuer().trim_end_matches('/'));
    let expected = Expected {
        method,
        url: &url,
        now: app.now(),
        access_token: None,
    };
    let proof =
        check_proof(proof, &expected).map_err(|e| ApiError::InvalidDpopProof(e.to_string()))?;
    let remember = Write::UseOnce {
        kind: USED_PROOF.to_owned(),
        id: format!("{}:{}", proof.jkt, proof.jti),
        expires_at: stored_secs(proof.iat + PROOF_WINDOW_SECS + LEEWAY_SECS),
    };
    match app.store.write(vec![remember]).await {
        Ok(()) => Ok(proof.jkt),
        Err(StoreError::Conflict(_)) => Err(ApiError::InvalidDpopProof(
            "the DPoP proof was used before".into(),
        )),
        Err(other) => Err(other.into()),
    }
}
