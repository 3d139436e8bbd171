//! Each way an identity token can be wrong, on real keys.

use base64::Engine as _;
use jsonwebtoken::EncodingKey;

use super::*;
use crate::config::{ApiKeyConfig, Config};

const NOW: u64 = 1_795_466_920;

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Authenticator,
    dev: DevIssuer,
    idp: KeyRing,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with exactly this header and these claims, signed by `key` with `alg`.
fn forge(header: Value, claims: Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

async fn fixture() -> Fixture {
    let dir = tempfile::TempDir::new().unwrap();
    let idp = KeyRing::open(&dir.path().join("idp"), SigningAlg::Es256, NOW).unwrap();
    let jwks = JwkSet {
        keys: vec![idp.active().unwrap().public.clone()],
    };
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, serde_json::to_string(&jwks).unwrap()).unwrap();
    let mut config = Config::quickstart();
    config.data_dir = dir.path().join("data");
    config.identity.issuers.push(TrustedIssuerConfig {
        issuer: "https://idp.test".into(),
        audience: "jitgate".into(),
        jwks: format!("file://{}", jwks_path.display()),
        algorithms: vec!["ES256".into()],
        groups_claim: "roles".into(),
        principal_claim: "sub".into(),
        mfa_values: crate::config::DEFAULT_MFA_VALUES
            .map(str::to_owned)
            .to_vec(),
        principal_prefix: String::new(),
        allowed_groups: None,
        client_id: None,
        client_secret: None,
    });
    config.identity.api_keys.push(ApiKeyConfig {
        name: "deployer".into(),
        hash: Some(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"jg_secret-deploy-key"))
        )),
        principal: "Service::\"deployer\"".into(),
        groups: vec!["Group::\"deployers\"".into()],
        jwks: None,
    });
    let auth = Authenticator::from_config(&config, NOW).await.unwrap();
    let dev = DevIssuer::open(&config.data_dir, NOW).unwrap();
    Fixture {
        _dir: dir,
        auth,
        dev,
        idp,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn dev_header(f: &Fixture) -> Value {
    json!({"alg": "ES256", "typ": DEV_TYP, "kid": f.dev.ring.active().unwrap().kid})
}

fn dev_claims() -> Value {
    json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 600})
}

async fn rejection(f: &Fixture, token: &str) -> AuthError {
    f.auth
        .authenticate(Some(&bearer(token)), NOW)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn dev_tokens_name_the_principal_groups_and_mfa() {
    let f = fixture().await;
    let token = f
        .dev
        .mint(
            "alice",
            &["oncall".into(), "sre".into()],
            true,
            Duration::from_secs(600),
            NOW,
        )
        .unwrap();
    let caller = f
        .auth
        .authenticate(Some(&bearer(&token)), NOW)
        .await
        .unwrap();
    assert_eq!(caller.principal, EntityRef::new("User", "alice"));
    assert_eq!(
        caller.groups,
        [
            EntityRef::new("Group", "oncall"),
            EntityRef::new("Group", "sre")
        ]
    );
    assert!(caller.mfa);
    let token = f
        .dev
        .mint("bob", &[], false, Duration::from_secs(600), NOW)
        .unwrap();
    assert!(
        !f.auth
            .authenticate(Some(&bearer(&token)), NOW)
            .await
            .unwrap()
            .mfa
    );
}

#[tokio::test]
async fn no_credentials_is_missing_not_invalid() {
    let f = fixture().await;
    assert_eq!(
        f.auth.authenticate(None, NOW).await,
        Err(AuthError::Missing)
    );
    assert_eq!(
        f.auth.authenticate(Some("Basic YTpi"), NOW).await,
        Err(AuthError::Missing)
    );
    assert_eq!(
        f.auth.authenticate(Some("Bearer "), NOW).await,
        Err(AuthError::Missing)
    );
}

/// A dev token signed with the dev key, its claims patched: a null removes a claim.
fn claims_with(f: &Fixture, patch: Value) -> String {
    let mut claims = dev_claims();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    let dev_key = &f.dev.ring.active().unwrap().encoding;
    forge(dev_header(f), claims, dev_key, Algorithm::ES256)
}

/// The dev token header, patched.
fn header_with(f: &Fixture, patch: Value) -> Value {
    let mut header = dev_header(f);
    for (k, v) in patch.as_object().unwrap() {
        header[k] = v.clone();
    }
    header
}

async fn assert_refused(f: &Fixture, cases: Vec<(&str, String, Rejection)>) {
    for (name, token, expected) in cases {
        assert_eq!(
            rejection(f, &token).await,
            AuthError::Invalid(expected),
            "{name}"
        );
    }
}

#[tokio::test]
async fn every_token_with_broken_claims_is_refused() {
    let f = fixture().await;
    let dev_key = &f.dev.ring.active().unwrap().encoding;
    let good = forge(dev_header(&f), dev_claims(), dev_key, Algorithm::ES256);
    assert!(f.auth.authenticate(Some(&bearer(&good)), NOW).await.is_ok());
    let cases = vec![
        ("garbage", "not.a.jwt".into(), Rejection::Malformed),
        ("two parts", "abc.def".into(), Rejection::Malformed),
        (
            "expired",
            claims_with(
                &f,
                json!({"exp": NOW - 6, "iat": NOW - 600, "nbf": NOW - 600}),
            ),
            Rejection::BadSignatureOrClaims,
        ),
        (
            "not yet valid",
            claims_with(&f, json!({"nbf": NOW + 60})),
            Rejection::BadSignatureOrClaims,
        ),
        (
            "issued in the future",
            claims_with(&f, json!({"iat": NOW + 60})),
            Rejection::IssuedInFuture,
        ),
        (
            "no iat",
            claims_with(&f, json!({"iat": null})),
            Rejection::NoIssuedAt,
        ),
        (
            "wrong audience",
            claims_with(&f, json!({"aud": "someone-else"})),
            Rejection::BadSignatureOrClaims,
        ),
        (
            "no sub",
            claims_with(&f, json!({"sub": null})),
            Rejection::BadSignatureOrClaims,
        ),
        (
            "empty sub",
            claims_with(&f, json!({"sub": ""})),
            Rejection::BadSignatureOrClaims,
        ),
        (
            "wrong issuer",
            claims_with(&f, json!({"iss": "https://evil.test"})),
            Rejection::UnknownIssuer,
        ),
        (
            "oversize",
            claims_with(&f, json!({"padding": "x".repeat(9000)})),
            Rejection::Oversize,
        ),
    ];
    assert_refused(&f, cases).await;
}

#[tokio::test]
async fn every_token_with_a_broken_header_is_refused() {
    let f = fixture().await;
    let dev_key = &f.dev.ring.active().unwrap().encoding;
    let cases = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(header_with(&f, json!({"alg": "none"}))
                    .to_string()
                    .as_bytes()),
                b64(dev_claims().to_string().as_bytes())
            ),
            Rejection::AlgorithmNotAllowed,
        ),
        (
            "HS256 signed with the public key",
            forge(
                header_with(&f, json!({"alg": "HS256"})),
                dev_claims(),
                &EncodingKey::from_secret(
                    serde_json::to_string(&f.dev.ring.active().unwrap().public)
                        .unwrap()
                        .as_bytes(),
                ),
                Algorithm::HS256,
            ),
            Rejection::AlgorithmNotAllowed,
        ),
        (
            "unknown kid",
            forge(
                header_with(&f, json!({"kid": "nope"})),
                dev_claims(),
                dev_key,
                Algorithm::ES256,
            ),
            Rejection::UnknownKey,
        ),
        (
            "no kid",
            forge(
                json!({"alg": "ES256", "typ": DEV_TYP}),
                dev_claims(),
                dev_key,
                Algorithm::ES256,
            ),
            Rejection::NoKeyId,
        ),
        (
            "crit header",
            forge(
                header_with(&f, json!({"crit": ["exp"], "exp": 1})),
                dev_claims(),
                dev_key,
                Algorithm::ES256,
            ),
            Rejection::CritHeader,
        ),
        (
            "wrong typ",
            forge(
                header_with(&f, json!({"typ": "JWT"})),
                dev_claims(),
                dev_key,
                Algorithm::ES256,
            ),
            Rejection::WrongType,
        ),
        (
            "access token passed as identity",
            forge(
                header_with(&f, json!({"typ": "at+jwt"})),
                dev_claims(),
                dev_key,
                Algorithm::ES256,
            ),
            Rejection::WrongType,
        ),
    ];
    assert_refused(&f, cases).await;
}

#[tokio::test]
async fn a_token_signed_by_a_key_not_of_its_issuer_is_refused() {
    let f = fixture().await;
    let idp_key = &f.idp.active().unwrap().encoding;
    let idp_kid = f.idp.active().unwrap().kid.clone();
    let cases = vec![
        (
            "signed by another key",
            forge(
                header_with(&f, json!({"kid": f.dev.ring.active().unwrap().kid})),
                dev_claims(),
                idp_key,
                Algorithm::ES256,
            ),
            Rejection::BadSignatureOrClaims,
        ),
        (
            "dev claims with the idp's kid",
            forge(
                json!({"alg": "ES256", "typ": DEV_TYP, "kid": idp_kid}),
                dev_claims(),
                idp_key,
                Algorithm::ES256,
            ),
            Rejection::UnknownKey,
        ),
    ];
    assert_refused(&f, cases).await;
}

#[tokio::test]
async fn the_clock_leeway_is_five_seconds() {
    let f = fixture().await;
    let dev_key = &f.dev.ring.active().unwrap().encoding;
    let mut claims = dev_claims();
    claims["exp"] = json!(NOW - 5);
    let token = forge(dev_header(&f), claims, dev_key, Algorithm::ES256);
    assert!(
        f.auth
            .authenticate(Some(&bearer(&token)), NOW)
            .await
            .is_ok()
    );
    let mut claims = dev_claims();
    claims["iat"] = json!(NOW + 5);
    let token = forge(dev_header(&f), claims, dev_key, Algorithm::ES256);
    assert!(
        f.auth
            .authenticate(Some(&bearer(&token)), NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn trusted_issuers_are_verified_against_their_jwks() {
    let f = fixture().await;
    let key = f.idp.active().unwrap();
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
    let claims = json!({
        "iss": "https://idp.test", "aud": "jitgate", "sub": "carol", "iat": NOW, "exp": NOW + 60,
        "roles": ["dba"], "amr": ["pwd", "otp"], "azp": "cli-app"
    });
    let token = forge(
        header.clone(),
        claims.clone(),
        &key.encoding,
        Algorithm::ES256,
    );
    let caller = f
        .auth
        .authenticate(Some(&bearer(&token)), NOW)
        .await
        .unwrap();
    assert_eq!(caller.principal, EntityRef::new("User", "carol"));
    assert_eq!(caller.groups, [EntityRef::new("Group", "dba")]);
    assert!(caller.mfa);
    assert_eq!(caller.client_id, "cli-app");

    // Pinned algorithms: the issuer allows ES256 only.
    let mut wrong_alg = header.clone();
    wrong_alg["alg"] = json!("ES384");
    let token = forge(wrong_alg, claims.clone(), &key.encoding, Algorithm::ES256);
    assert_eq!(
        rejection(&f, &token).await,
        AuthError::Invalid(Rejection::AlgorithmNotAllowed)
    );
    // The dev key cannot sign for the issuer.
    let token = forge(
        header,
        claims,
        &f.dev.ring.active().unwrap().encoding,
        Algorithm::ES256,
    );
    assert_eq!(
        rejection(&f, &token).await,
        AuthError::Invalid(Rejection::BadSignatureOrClaims)
    );
}

#[tokio::test]
async fn api_keys_map_to_their_principal() {
    let f = fixture().await;
    let caller = f
        .auth
        .authenticate(Some("Bearer jg_secret-deploy-key"), NOW)
        .await
        .unwrap();
    assert_eq!(caller.principal, EntityRef::new("Service", "deployer"));
    assert_eq!(caller.groups, [EntityRef::new("Group", "deployers")]);
    assert_eq!(caller.client_id, "deployer");
    assert_eq!(
        f.auth.authenticate(Some("Bearer jg_wrong"), NOW).await,
        Err(AuthError::Invalid(Rejection::UnknownKey))
    );
}

#[tokio::test]
async fn a_jwks_with_a_symmetric_key_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k"}]}"#,
    )
    .unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.identity.issuers.push(TrustedIssuerConfig {
        issuer: "https://idp.test".into(),
        audience: "jitgate".into(),
        jwks: format!("file://{}", path.display()),
        algorithms: vec!["RS256".into()],
        groups_claim: "groups".into(),
        principal_claim: "sub".into(),
        mfa_values: crate::config::DEFAULT_MFA_VALUES
            .map(str::to_owned)
            .to_vec(),
        principal_prefix: String::new(),
        allowed_groups: None,
        client_id: None,
        client_secret: None,
    });
    let err = Authenticator::from_config(&config, NOW).await.unwrap_err();
    assert!(err.to_string().contains("symmetric"), "{err}");
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_at_a_bounded_rate() {
    let dir = tempfile::TempDir::new().unwrap();
    let ring = |name: &str| KeyRing::open(&dir.path().join(name), SigningAlg::Es256, NOW).unwrap();
    let (a, b, c) = (ring("a"), ring("b"), ring("c"));
    let jwks_path = dir.path().join("jwks.json");
    let publish = |rings: &[&KeyRing]| {
        let set = JwkSet {
            keys: rings
                .iter()
                .map(|r| r.active().unwrap().public.clone())
                .collect(),
        };
        std::fs::write(&jwks_path, serde_json::to_string(&set).unwrap()).unwrap();
    };
    publish(&[&a]);
    let config = idp_config(dir.path(), &format!("file://{}", jwks_path.display()));
    let auth = Authenticator::from_config(&config, NOW).await.unwrap();
    let token = |ring: &KeyRing| {
        let key = ring.active().unwrap();
        bearer(&forge(
            json!({"alg": "ES256", "kid": key.kid}),
            json!({"iss": "https://idp.test", "aud": "jitgate", "sub": "u", "iat": NOW, "exp": NOW + 60}),
            &key.encoding,
            Algorithm::ES256,
        ))
    };
    assert!(auth.authenticate(Some(&token(&a)), NOW).await.is_ok());
    // The IdP rotates to b: the first token with b's kid makes jitgate read the JWKS again.
    publish(&[&a, &b]);
    assert!(auth.authenticate(Some(&token(&b)), NOW).await.is_ok());
    // Right after, another unknown kid does not trigger another read.
    publish(&[&a, &b, &c]);
    assert_eq!(
        auth.authenticate(Some(&token(&c)), NOW).await,
        Err(AuthError::Invalid(Rejection::UnknownKey))
    );
}

#[tokio::test]
async fn an_unreachable_https_jwks_refuses_that_issuers_tokens_but_does_not_stop_the_start() {
    let dir = tempfile::TempDir::new().unwrap();
    let idp = KeyRing::open(&dir.path().join("idp"), SigningAlg::Es256, NOW).unwrap();
    // Loopback port 1: nothing listens, the connection is refused at once.
    let config = idp_config(dir.path(), "https://127.0.0.1:1/jwks.json");
    let auth = Authenticator::from_config(&config, NOW).await.unwrap();
    let key = idp.active().unwrap();
    let token = forge(
        json!({"alg": "ES256", "kid": key.kid}),
        json!({"iss": "https://idp.test", "aud": "jitgate", "sub": "u", "iat": NOW, "exp": NOW + 60}),
        &key.encoding,
        Algorithm::ES256,
    );
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW).await,
        Err(AuthError::Invalid(Rejection::UnknownKey))
    );
}

/// A configuration trusting `https://idp.test` (ES256, audience `jitgate`) with `jwks`.
fn idp_config(dir: &std::path::Path, jwks: &str) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.identity.issuers.push(TrustedIssuerConfig {
        issuer: "https://idp.test".into(),
        audience: "jitgate".into(),
        jwks: jwks.into(),
        algorithms: vec!["ES256".into()],
        groups_claim: "groups".into(),
        principal_claim: "sub".into(),
        mfa_values: crate::config::DEFAULT_MFA_VALUES
            .map(str::to_owned)
            .to_vec(),
        principal_prefix: String::new(),
        allowed_groups: None,
        client_id: None,
        client_secret: None,
    });
    config
}

#[tokio::test]
async fn a_verified_token_is_remembered_but_never_past_its_expiry() {
    let f = fixture().await;
    let token = f
        .dev
        .mint("alice", &[], true, Duration::from_secs(30), NOW)
        .unwrap();
    let first = f
        .auth
        .authenticate(Some(&bearer(&token)), NOW)
        .await
        .unwrap();
    assert_eq!(f.auth.remembered(), 1);
    let again = f
        .auth
        .authenticate(Some(&bearer(&token)), NOW + 20)
        .await
        .unwrap();
    assert_eq!(again, first);
    // exp + the 5 s leeway is the last second it counts, remembered or not.
    assert!(
        f.auth
            .authenticate(Some(&bearer(&token)), NOW + 35)
            .await
            .is_ok()
    );
    assert_eq!(
        rejection_at(&f, &token, NOW + 36).await,
        AuthError::Invalid(Rejection::BadSignatureOrClaims)
    );

    // A long-lived token is checked again after a minute, so a withdrawn key stops counting.
    let long = f
        .dev
        .mint("bob", &[], false, Duration::from_secs(3600), NOW)
        .unwrap();
    f.auth
        .authenticate(Some(&bearer(&long)), NOW)
        .await
        .unwrap();
    let (_, until) = f.auth.verified.map.lock().unwrap()
        [&<[u8; 32]>::from(Sha256::digest(long.as_bytes()))]
        .clone();
    assert_eq!(until, NOW + 60);

    // A tampered copy is not the same token.
    let mut forged = token.clone();
    forged.pop();
    assert!(
        f.auth
            .authenticate(Some(&bearer(&forged)), NOW)
            .await
            .is_err()
    );
}

async fn rejection_at(f: &Fixture, token: &str, now: u64) -> AuthError {
    f.auth
        .authenticate(Some(&bearer(token)), now)
        .await
        .unwrap_err()
}

#[test]
fn client_keys_are_public_asymmetric_keys_from_a_file() {
    let dir = tempfile::TempDir::new().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("file://{}", path.display())
    };
    let public = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    let private = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;
    let secret = r#"{"kty":"oct","k":"c2VjcmV0"}"#;
    let read = |url: &str| super::assertion::read_client_keys(url);
    assert!(read(&write("ok.json", &format!(r#"{{"keys":[{public}]}}"#))).is_ok());
    for (name, text, says) in [
        (
            "private.json",
            format!(r#"{{"keys":[{private}]}}"#),
            "private key",
        ),
        (
            "secret.json",
            format!(r#"{{"keys":[{secret}]}}"#),
            "shared secret",
        ),
        ("empty.json", r#"{"keys":[]}"#.to_owned(), "no key"),
        ("bad.json", "not json".to_owned(), "not JSON"),
    ] {
        let error = read(&write(name, &text)).unwrap_err();
        assert!(error.contains(says), "{name}: {error}");
    }
    assert!(
        read("file:///no/such/file")
            .unwrap_err()
            .contains("cannot read")
    );
}
