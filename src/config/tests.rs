use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn from_toml(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("jitgate.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path), env(vars))
}

#[test]
fn the_quickstart_has_every_default_and_the_dev_issuer() {
    let config = Config::load(None, env(&[])).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.issuer, "http://127.0.0.1:8080");
    assert_eq!(config.data_dir, PathBuf::from("data"));
    assert_eq!(config.signing_alg, SigningAlg::Es256);
    assert_eq!(config.default_ttl, Duration::from_secs(300));
    assert_eq!(config.max_ttl, Duration::from_secs(3600));
    assert_eq!(config.pending_ttl, Duration::from_secs(3600));
    assert_eq!(config.default_audience, "jitgate");
    assert_eq!(config.time_zone, "UTC");
    assert_eq!(config.rate_limit.per_principal_per_minute, 120);
    assert_eq!(config.rate_limit.pending_list_scan, 500);
    assert!(config.identity.dev.enabled);
    assert!(
        config.risk.no_mfa.is_none(),
        "risk signals are off when unset"
    );
}

#[test]
fn configuring_through_the_environment_turns_the_dev_issuer_off_unless_it_says_so() {
    let load = |vars: &[(&str, &str)]| Config::load(None, env(vars)).unwrap();
    assert!(
        !load(&[("JITGATE_DATA_DIR", "/var/lib/jitgate")])
            .identity
            .dev
            .enabled
    );
    assert!(
        load(&[("JITGATE_LOG", "debug"), ("HOME", "/root")])
            .identity
            .dev
            .enabled
    );
    let on = load(&[
        ("JITGATE_DATA_DIR", "/var/lib/jitgate"),
        ("JITGATE_IDENTITY__DEV__ENABLED", "true"),
    ]);
    assert!(on.identity.dev.enabled);
}

#[test]
fn a_config_file_turns_the_dev_issuer_off_unless_it_says_so() {
    assert!(!from_toml("", &[]).unwrap().identity.dev.enabled);
    let on = from_toml("[identity.dev]\nenabled = true\n", &[]).unwrap();
    assert!(on.identity.dev.enabled);
}

#[test]
fn reads_every_section() {
    let config = from_toml(
        r#"
listen = "127.0.0.1:9000"
signing_alg = "EdDSA"
default_ttl = "2m"
trusted_proxies = ["10.0.0.0/8"]
time_zone = "Europe/Berlin"
[policy]
dir = "p"
[[identity.issuers]]
issuer = "https://idp.example.com"
audience = "jitgate"
jwks = "file:///etc/jwks.json"
algorithms = ["RS256"]
[[identity.api_keys]]
name = "deployer"
hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
principal = 'Service::"deployer"'
groups = ['Group::"deployers"']
[risk]
trusted_networks = ["10.0.0.0/8"]
outside_network = 30
off_hours = { start = 20, end = 7, weight = 15 }
recent_denials = { window = "10m", each = 10, max = 30 }
request_rate = { per_minute = 30, weight = 20 }
[[webhooks]]
url = "https://hooks.example.com/x"
secret = "s3cret"
events = ["break_glass"]
"#,
        &[],
    )
    .unwrap();
    assert_eq!(config.signing_alg, SigningAlg::EdDsa);
    assert_eq!(config.default_ttl, Duration::from_secs(120));
    assert_eq!(config.policy.dir, PathBuf::from("p"));
    assert_eq!(config.identity.issuers[0].groups_claim, "groups");
    assert_eq!(config.risk.off_hours.as_ref().unwrap().start, 20);
    assert_eq!(
        config.risk.recent_denials.as_ref().unwrap().window,
        Duration::from_secs(600)
    );
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "secrets stay out of Debug"
    );
}

#[test]
fn environment_overrides_nested_keys() {
    let config = from_toml(
        "listen = \"127.0.0.1:9000\"\n",
        &[
            ("JITGATE_LISTEN", "127.0.0.1:7000"),
            ("JITGATE_POLICY__DIR", "/etc/jitgate/policies"),
            ("JITGATE_IDENTITY__DEV__ENABLED", "true"),
            ("JITGATE_RISK__NO_MFA", "20"),
            ("JITGATE_TRUSTED_PROXIES", r#"["192.168.0.0/16"]"#),
            ("JITGATE_DEFAULT_AUDIENCE", "inf"),
            ("JITGATE_LOG", "debug"),
            ("JITGATE_SERVER", "http://127.0.0.1:8080"),
            ("JITGATE_TOKEN", "ey…"),
            ("JITGATE_TEST_DATABASE_URL", "postgres://x"),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert_eq!(config.listen.port(), 7000);
    assert_eq!(config.policy.dir, PathBuf::from("/etc/jitgate/policies"));
    assert!(config.identity.dev.enabled);
    assert_eq!(config.risk.no_mfa, Some(20));
    assert_eq!(config.trusted_proxies[0].to_string(), "192.168.0.0/16");
    assert_eq!(config.default_audience, "inf", "not read as a float");
}

#[test]
fn errors_name_the_key() {
    /// (file, environment, key named, text in the message)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        ("lisen = \"x\"", &[], "lisen", "unknown field `lisen`"),
        (
            "[ui]\npublic_url = \"jitgate.example.com/ui\"",
            &[],
            "ui.public_url",
            "must be an http(s) URL",
        ),
        (
            "[[identity.issuers]]\nissuer = \"https://idp\"\naudience = \"a\"\njwks = \"https://idp/jwks\"\nalgorithms = [\"ES256\"]\nprincipal_claim = \"\"",
            &[],
            "identity.issuers[0].principal_claim",
            "must not be empty",
        ),
        (
            "[policy]\ndirs = \"x\"",
            &[],
            "policy.dirs",
            "unknown field `dirs`",
        ),
        (
            "",
            &[("JITGATE_LISTNE", "x")],
            "listne",
            "unknown field `listne`",
        ),
        (
            "signing_alg = \"HS256\"",
            &[],
            "signing_alg",
            "unknown variant `HS256`",
        ),
        (
            "default_ttl = \"5 parsecs\"",
            &[],
            "default_ttl",
            "not a duration",
        ),
        (
            "default_ttl = \"2h\"",
            &[],
            "default_ttl",
            "must not exceed max_ttl",
        ),
        (
            "time_zone = \"Mars/Olympus\"",
            &[],
            "time_zone",
            "unknown time zone",
        ),
        (
            "trusted_proxies = [\"10.0.0.0/33\"]",
            &[],
            "trusted_proxies[0]",
            "invalid",
        ),
        (
            "[[identity.api_keys]]\nname = \"a\"\nhash = \"md5:1\"\nprincipal = 'Service::\"a\"'",
            &[],
            "identity.api_keys[0].hash",
            "sha256:",
        ),
        (
            "[[identity.api_keys]]\nname = \"a\"\nprincipal = 'Service::\"a\"'",
            &[],
            "identity.api_keys[0].hash",
            "jwks",
        ),
        (
            "[[identity.api_keys]]\nname = \"a\"\njwks = \"https://a/jwks\"\nprincipal = 'Service::\"a\"'",
            &[],
            "identity.api_keys[0].jwks",
            "file://",
        ),
        (
            "[[identity.issuers]]\nissuer = \"i\"\naudience = \"a\"\njwks = \"http://x\"\nalgorithms = [\"RS256\"]",
            &[],
            "identity.issuers[0].jwks",
            "https://",
        ),
        (
            "[[identity.issuers]]\nissuer = \"i\"\naudience = \"a\"\njwks = \"file:///x\"\nalgorithms = [\"HS256\"]",
            &[],
            "identity.issuers[0].algorithms",
            "`HS256`",
        ),
        (
            "[[webhooks]]\nurl = \"https://x\"\nformat = \"json\"",
            &[],
            "webhooks[0].secret",
            "signed",
        ),
        (
            "[[identity.issuers]]\nissuer = \"http://idp.example.com\"\naudience = \"a\"\njwks = \"file:///x\"\nalgorithms = [\"RS256\"]\nclient_id = \"ui\"",
            &[],
            "identity.issuers[0].client_id",
            "https://",
        ),
        (
            "[[identity.issuers]]\nissuer = \"https://a\"\naudience = \"a\"\njwks = \"file:///x\"\nalgorithms = [\"RS256\"]\nclient_id = \"ui\"\n[[identity.issuers]]\nissuer = \"https://b\"\naudience = \"a\"\njwks = \"file:///x\"\nalgorithms = [\"RS256\"]\nclient_id = \"ui\"",
            &[],
            "identity.issuers",
            "only one issuer",
        ),
        (
            "issuer = \"http://jitgate.example.com\"\n[[identity.issuers]]\nissuer = \"https://a\"\naudience = \"a\"\njwks = \"file:///x\"\nalgorithms = [\"RS256\"]\nclient_id = \"ui\"",
            &[],
            "ui.public_url",
            "https://",
        ),
        (
            "[ui]\nsession_idle = \"9h\"",
            &[],
            "ui.session_idle",
            "must not exceed ui.session_max",
        ),
        (
            "[ui]\nsession_max = \"10s\"",
            &[],
            "ui.session_max",
            "at least 1m",
        ),
    ];
    for (text, vars, key, needle) in cases {
        let err = from_toml(text, vars).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("`{key}`")) && message.contains(needle),
            "{text:?} {vars:?}: {message}"
        );
    }
}

#[test]
fn the_example_config_is_valid_and_all_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jitgate.example.toml");
    let example = Config::load(Some(&path), env(&[])).unwrap();
    let defaults = Config::default();
    assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
}

#[test]
fn group_patterns_match_whole_names() {
    for (pattern, text, matches) in [
        ("partner-*", "partner-ops", true),
        ("partner-*", "partner-", true),
        ("partner-*", "security", false),
        ("security", "security", true),
        ("security", "security-admins", false),
        ("*-readers", "db-readers", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxcyyb", false),
        ("*", "anything", true),
    ] {
        assert_eq!(glob_matches(pattern, text), matches, "{pattern} {text}");
    }
}

#[test]
fn a_syntax_error_names_the_file() {
    let err = from_toml("listen = ", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("jitgate.toml"));
}

#[test]
fn the_key_encryption_key_comes_from_its_file_or_the_environment_never_printed() {
    const KEK: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
    let from_env = from_toml("", &[("JITGATE_KEY_ENCRYPTION_KEY", KEK)]).unwrap();
    let text = from_env.key_encryption_key_text().unwrap().unwrap();
    assert_eq!(text.expose(), KEK);
    assert!(!format!("{from_env:?}").contains(KEK), "never in Debug");

    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("kek");
    std::fs::write(&file, format!("{KEK}\n")).unwrap();
    let in_file = format!("key_encryption_key_file = {:?}", file.display().to_string());
    let from_file = from_toml(&in_file, &[]).unwrap();
    let text = from_file.key_encryption_key_text().unwrap().unwrap();
    assert_eq!(text.expose().trim(), KEK);

    let both = from_toml(&in_file, &[("JITGATE_KEY_ENCRYPTION_KEY", KEK)]).unwrap();
    let err = both.key_encryption_key_text().unwrap_err().to_string();
    assert!(err.contains("not both"), "{err}");
    assert!(
        from_toml("", &[])
            .unwrap()
            .key_encryption_key_text()
            .unwrap()
            .is_none()
    );
    let zero = from_toml("[database]\nmax_connections = 0", &[]).unwrap_err();
    assert!(
        zero.to_string().contains("database.max_connections"),
        "{zero}"
    );
}

#[test]
fn a_database_password_is_never_printed() {
    let config = from_toml(
        "database_url = \"postgres://jitgate:hunter2@db.internal:5432/jitgate\"",
        &[],
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("postgres://jitgate:…@db.internal:5432/jitgate"),
        "{shown}"
    );
    assert_eq!(
        &*config.database_url,
        "postgres://jitgate:hunter2@db.internal:5432/jitgate"
    );
}

#[test]
fn plain_http_is_for_this_machine_only() {
    for url in [
        "https://idp.example.com/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9000/x",
    ] {
        assert!(is_https_or_loopback(url), "{url}");
    }
    for url in [
        "http://idp.example.com/jwks",
        "http://127.0.0.1.evil.example/jwks",
        "http://localhost.evil.example/",
        "http://127.0.0.1@evil.example/",
        "ftp://127.0.0.1/",
        "file:///etc/jwks.json",
    ] {
        assert!(!is_https_or_loopback(url), "{url}");
    }
}

#[test]
fn the_ui_origin_is_the_public_url_or_the_issuer_without_a_path() {
    let mut config = Config {
        issuer: "https://JITGATE.example.com/".into(),
        ..Config::default()
    };
    assert_eq!(config.ui_origin(), "https://jitgate.example.com");
    config.ui.public_url = Some("https://approvals.example.com:8443/ui/".into());
    assert_eq!(config.ui_origin(), "https://approvals.example.com:8443");
}
