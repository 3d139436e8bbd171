//! Trusted identity issuers scoped to their own users and groups (issue 11 finding 9): a
//! partner's IdP cannot pass for a user of ours nor assert our administrators' group.

use std::path::Path;

use jitgate::config::{Config, SigningAlg, TrustedIssuerConfig};
use jitgate::token::KeyRing;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::{TestServer, unix_now};

/// An identity provider: a key, its JWKS as a file, and the issuer entry trusting it.
struct Idp {
    issuer: String,
    kid: String,
    key: EncodingKey,
    config: TrustedIssuerConfig,
}

impl Idp {
    fn new(dir: &Path, name: &str) -> Self {
        let ring = KeyRing::open(&dir.join(name), SigningAlg::Es256, unix_now()).unwrap();
        let active = ring.active().unwrap();
        let jwks_path = dir.join(format!("{name}-jwks.json"));
        let jwks = JwkSet {
            keys: vec![active.public.clone()],
        };
        std::fs::write(&jwks_path, serde_json::to_string(&jwks).unwrap()).unwrap();
        let issuer = format!("https://{name}.test");
        Self {
            issuer: issuer.clone(),
            kid: active.kid.clone(),
            key: EncodingKey::from_ec_pem(&std::fs::read(active.path.as_ref().unwrap()).unwrap())
                .unwrap(),
            config: TrustedIssuerConfig {
                issuer,
                audience: "jitgate".into(),
                jwks: format!("file://{}", jwks_path.display()),
                algorithms: vec!["ES256".into()],
                groups_claim: "groups".into(),
                principal_claim: "sub".into(),
                mfa_values: jitgate::config::DEFAULT_MFA_VALUES
                    .map(str::to_owned)
                    .to_vec(),
                principal_prefix: String::new(),
                allowed_groups: None,
                client_id: None,
                client_secret: None,
            },
        }
    }

    fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.token_with(json!({"sub": sub, "groups": groups, "amr": ["pwd", "otp"]}))
    }

    /// A token of this issuer with `claims` beside `iss`, `aud`, `iat` and `exp`.
    fn token_with(&self, mut claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let now = unix_now();
        let fields = claims.as_object_mut().unwrap();
        fields.insert("iss".into(), json!(self.issuer));
        fields.insert("aud".into(), json!("jitgate"));
        fields.insert("iat".into(), json!(now));
        fields.insert("exp".into(), json!(now + 300));
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// Our IdP, unprefixed, and a partner's, prefixed and allowed only `partner-*` groups.
async fn two_issuers() -> (TestServer, Idp, Idp) {
    let pack = TempPack::shipped();
    let corp = Idp::new(pack.dir.path(), "corp");
    let mut partner = Idp::new(pack.dir.path(), "partner");
    partner.config.principal_prefix = "partner|".into();
    partner.config.allowed_groups = Some(vec!["partner-*".into()]);
    let issuers = vec![corp.config.clone(), partner.config.clone()];
    let server = TestServer::start(pack, move |c: &mut Config| {
        c.identity.issuers = issuers;
    })
    .await;
    (server, corp, partner)
}

#[tokio::test]
async fn a_second_issuer_asserting_an_admin_group_is_not_an_administrator() {
    let (server, corp, partner) = two_issuers().await;
    let ours = corp.token("erin", &["security"]);
    assert_eq!(
        server.get("/v1/audit", Some(&ours)).await.status(),
        StatusCode::OK
    );
    let theirs = partner.token("mallory", &["security", "partner-ops"]);
    assert_eq!(
        server.get("/v1/audit", Some(&theirs)).await.status(),
        StatusCode::FORBIDDEN,
        "a partner's `security` group is dropped"
    );
}

#[tokio::test]
async fn a_partner_sub_is_a_principal_of_its_own() {
    let (server, corp, partner) = two_issuers().await;
    let ask = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1"});
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&partner.token("dave", &["partner-ops"])),
            ask.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let seen: Value = server
        .get(
            &format!("/v1/access-requests/{id}"),
            Some(&partner.token("dave", &[])),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["requester"], "User::\"partner|dave\"", "{seen}");
    // Our dave does not see the partner's request: a different principal.
    let ours = server
        .get(
            &format!("/v1/access-requests/{id}"),
            Some(&corp.token("dave", &[])),
        )
        .await;
    assert_eq!(ours.status(), StatusCode::NOT_FOUND);
}

#[test]
fn check_warns_when_two_issuers_can_name_the_same_principal() {
    let dir = tempfile::TempDir::new().unwrap();
    let issuer = |name: &str, prefix: &str| {
        format!(
            "[[identity.issuers]]\nissuer = \"https://{name}.test\"\naudience = \"jitgate\"\n\
             jwks = \"file:///dev/null\"\nalgorithms = [\"ES256\"]\nprincipal_prefix = \"{prefix}\"\n"
        )
    };
    let pack = format!(
        "[policy]\ndir = \"{}\"\nschemas = \"{}\"\n",
        super::repo().join("policies").display(),
        super::repo().join("schemas").display()
    );
    let run = |issuers: &str| {
        let path = dir.path().join("jitgate.toml");
        std::fs::write(&path, format!("{pack}{issuers}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["check", "--config", path.to_str().unwrap()])
            .env_remove("JITGATE_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let both_bare = run(&format!("{}{}", issuer("corp", ""), issuer("ci", "")));
    assert!(
        both_bare.contains("warning: identity.issuers[0] (https://corp.test) and identity.issuers[1] (https://ci.test) can name the same principal"),
        "{both_bare}"
    );
    let nested = run(&format!(
        "{}{}",
        issuer("a", "partner|"),
        issuer("b", "partner|ci|")
    ));
    assert!(nested.contains("can name the same principal"), "{nested}");
    let apart = run(&format!(
        "{}{}",
        issuer("corp", ""),
        issuer("partner", "partner|")
    ));
    assert!(
        apart.contains("can name the same principal"),
        "an unprefixed issuer can still say `sub: partner|dave`: {apart}"
    );
    let distinct = run(&format!(
        "{}{}",
        issuer("corp", "corp|"),
        issuer("partner", "partner|")
    ));
    assert!(!distinct.contains("warning"), "{distinct}");
}

/// An IdP whose `sub` is opaque names its users by `email`, and says MFA in `acr`.
#[tokio::test]
async fn an_issuer_maps_its_own_principal_claim_and_mfa_values() {
    const MULTI_FACTOR: &str = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";
    let pack = TempPack::shipped();
    let mut entra = Idp::new(pack.dir.path(), "entra");
    entra.config.principal_claim = "email".into();
    entra.config.mfa_values = vec![MULTI_FACTOR.into(), "mfa".into()];
    let issuers = vec![entra.config.clone()];
    let server = TestServer::start(pack, move |c: &mut Config| {
        c.identity.issuers = issuers;
    })
    .await;
    // A production read needs MFA (deny-prod-without-mfa).
    let read = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1"});
    let with_acr = entra.token_with(json!({
        "sub": "00u1a2b3c4", "email": "alice@example.com", "groups": ["oncall"], "acr": MULTI_FACTOR,
    }));
    let (status, body) = server
        .post("/v1/access-requests", Some(&with_acr), read.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "db-proxy")
        .await;
    assert_eq!(claims.jit.principal, "User::\"alice@example.com\"");

    // `otp` is not one of this issuer's MFA values: no second factor, denied.
    let otp_only = entra.token_with(json!({
        "sub": "00u1a2b3c4", "email": "alice@example.com", "groups": ["oncall"], "amr": ["pwd", "otp"],
    }));
    let (status, body) = server
        .post("/v1/access-requests", Some(&otp_only), read.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["policies"], json!(["deny-prod-without-mfa"]), "{body}");

    // Without the principal claim the token names nobody: refused.
    let no_email =
        entra.token_with(json!({"sub": "00u1a2b3c4", "groups": ["oncall"], "amr": ["mfa"]}));
    let (status, body) = server
        .post("/v1/access-requests", Some(&no_email), read)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// A service's API key has no second factor to show: `no_mfa` does not count against it
/// unless `no_mfa_for_api_keys` says so.
#[tokio::test]
async fn services_are_not_penalised_for_mfa_unless_configured() {
    let deploy = json!({"action": "deploy", "resource": "Host::\"web-1\"", "reason": "release 42"});
    for (for_api_keys, expected_score) in [(false, 0), (true, 80)] {
        let server = TestServer::start(TempPack::shipped(), |c| {
            c.risk.no_mfa = Some(80);
            c.risk.no_mfa_for_api_keys = for_api_keys;
        })
        .await;
        let (status, body) = server
            .post("/v1/decisions", Some("jg_deploy-secret"), deploy.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["risk"]["score"], expected_score, "{body}");
        let expected = if for_api_keys { "deny" } else { "allow" };
        assert_eq!(body["decision"], expected, "{body}");
    }
}
