//! Identity tokens: mutated dev and IdP tokens, and IdP-signed tokens with arbitrary headers
//! and claims, through [`Authenticator::authenticate`], the entry point every request takes.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jitgate::config::{Config, SigningAlg};
use jitgate::identity::{AuthError, Authenticator, DevIssuer};
use jitgate::token::KeyRing;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::mutation::{self, Edit};
use super::proptest_config;

const IDP: &str = "https://idp.test";

const TOKENS: &[&str] = &[
    ".",
    "..",
    "=",
    "-",
    "_",
    "+",
    "/",
    " ",
    "eyJ",
    "A",
    "AAAA",
    "eyJhbGciOiJub25lIn0",
    "eyJhbGciOiJIUzI1NiJ9",
    "eyJ0eXAiOiJKV1QifQ",
    "e30",
    "bnVsbA",
    "W10",
    "%",
    "\u{0}",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A JSON value of any shape, leaning towards what claims and headers hold.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            IDP,
            "jitgate",
            "ES256",
            "none",
            "HS256",
            "RS256",
            "JWT",
            "at+jwt",
            "alice",
            "User::\"alice\"",
            "Group::\"security\"",
            "security",
            "",
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "alg", "typ", "kid", "crit", "jwk", "jku", "x5u", "b64", "iss", "aud", "sub", "exp",
            "nbf", "iat", "groups", "roles", "amr", "acr", "jti",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

/// The claims an IdP token carries, each kept or replaced by an arbitrary value.
fn claims() -> impl Strategy<Value = Value> {
    let now = now();
    (
        prop::collection::vec(proptest::option::of(json_value()), 7),
        prop::collection::vec((key(), json_value()), 0..3),
    )
        .prop_map(move |(replaced, extra)| {
            let base = [
                ("iss", json!(IDP)),
                ("aud", json!("jitgate")),
                ("sub", json!("carol")),
                ("iat", json!(now)),
                ("exp", json!(now + 300)),
                ("groups", json!(["sre"])),
                ("amr", json!(["mfa"])),
            ];
            let mut claims = serde_json::Map::new();
            for ((name, value), replacement) in base.into_iter().zip(replaced) {
                claims.insert(name.to_owned(), replacement.unwrap_or(value));
            }
            claims.extend(extra);
            Value::Object(claims)
        })
}

struct Fixture {
    _dir: TempDir,
    auth: Authenticator,
    idp_key: EncodingKey,
    idp_kid: String,
    /// Valid tokens to mutate: a dev token and an IdP token.
    valid: Vec<String>,
}

async fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let now = now();
    let idp = KeyRing::open(&dir.path().join("idp"), SigningAlg::Es256, now).unwrap();
    let key = idp.active().unwrap();
    let idp_key = EncodingKey::from_ec_pem(&fs::read(key.path.as_ref().unwrap()).unwrap()).unwrap();
    let jwks_path = dir.path().join("jwks.json");
    let jwks = JwkSet {
        keys: vec![key.public.clone()],
    };
    fs::write(&jwks_path, serde_json::to_string(&jwks).unwrap()).unwrap();
    let issuers: Config = toml::from_str(&format!(
        "[[identity.issuers]]\nissuer = \"{IDP}\"\naudience = \"jitgate\"\n\
         jwks = \"file://{}\"\nalgorithms = [\"ES256\"]\n",
        jwks_path.display()
    ))
    .unwrap();
    let mut config = Config::quickstart();
    config.data_dir = dir.path().join("data");
    config.identity.issuers = issuers.identity.issuers;
    let auth = Authenticator::from_config(&config, now).await.unwrap();
    let dev = DevIssuer::open(&config.data_dir, now)
        .unwrap()
        .mint(
            "alice",
            &["oncall".to_owned()],
            true,
            Duration::from_secs(600),
            now,
        )
        .unwrap();
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
    let claims = json!({"iss": IDP, "aud": "jitgate", "sub": "carol", "iat": now, "exp": now + 300, "groups": ["sre"]});
    let idp_token =
        jsonwebtoken::encode(&serde_json::from_value(header).unwrap(), &claims, &idp_key).unwrap();
    let fixture = Fixture {
        idp_kid: key.kid.clone(),
        _dir: dir,
        auth,
        idp_key,
        valid: vec![dev, idp_token],
    };
    for token in &fixture.valid {
        fixture
            .auth
            .authenticate(Some(&format!("Bearer {token}")), now)
            .await
            .unwrap();
    }
    fixture
}

/// Signs `header.claims` with the IdP's key, whatever they say.
fn signed(f: &Fixture, header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &f.idp_key, Algorithm::ES256).unwrap();
    format!("{message}.{signature}")
}

#[derive(Debug, Clone)]
enum Input {
    Mutated {
        index: usize,
        edits: Vec<Edit>,
    },
    Signed {
        header: Option<Value>,
        claims: Value,
    },
    Arbitrary(Vec<u8>),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (any::<usize>(), mutation::edits())
            .prop_map(|(index, edits)| Input::Mutated { index, edits }),
        4 => (proptest::option::weighted(0.3, json_value()), claims())
            .prop_map(|(header, claims)| Input::Signed { header, claims }),
        1 => mutation::arbitrary_input().prop_map(Input::Arbitrary),
    ]
}

#[test]
fn a_mutated_or_forged_identity_token_is_refused_cleanly() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = runtime.block_on(fixture());
    let accepted = std::cell::Cell::new(0u32);
    let config = proptest_config();
    proptest!(config.clone(), |(input in input())| {
        let (token, original) = match &input {
            Input::Mutated { index, edits } => {
                let original = &f.valid[index % f.valid.len()];
                let bytes = mutation::apply(original.as_bytes(), edits, TOKENS);
                (String::from_utf8_lossy(&bytes).into_owned(), Some(original))
            }
            Input::Signed { header, claims } => {
                let header = header
                    .clone()
                    .unwrap_or_else(|| json!({"alg": "ES256", "typ": "JWT", "kid": f.idp_kid}));
                (signed(&f, &header, claims), None)
            }
            Input::Arbitrary(bytes) => (String::from_utf8_lossy(bytes).into_owned(), None),
        };
        let result = runtime.block_on(f.auth.authenticate(Some(&format!("Bearer {token}")), now()));
        match (result, original) {
            // A changed token is never the one that was signed.
            (Ok(caller), Some(original)) => prop_assert_eq!(
                token.trim(), original.as_str(), "accepted a changed token as {:?}", caller
            ),
            (Ok(_), None) => accepted.set(accepted.get() + 1),
            (Err(AuthError::Missing), _) => {}
            (Err(AuthError::Invalid(rejection)), _) => {
                prop_assert!(!rejection.as_str().is_empty());
            }
        }
    });
    // Some forged claims are acceptable ones: the claim checks past the signature are reached.
    assert!(
        accepted.get() >= config.cases / 1000,
        "only {} of {} tokens were accepted",
        accepted.get(),
        config.cases
    );
}
