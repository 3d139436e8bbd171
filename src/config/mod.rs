//! Configuration: `jitgate.toml` (DESIGN §8), then `JITGATE_…` environment overrides, then
//! validation that names the bad key. Unknown keys are errors, in the file and in the
//! environment, so a typo never silently falls back to a default.
//!
//! An environment variable names a key path with `__` between levels, upper-cased:
//! `JITGATE_LISTEN`, `JITGATE_POLICY__DIR`, `JITGATE_IDENTITY__DEV__ENABLED`,
//! `JITGATE_RISK__NO_MFA`. Its value is read as a TOML value when it parses as one (`true`, `30`,
//! `["10.0.0.0/8"]`, `{ start = 20, end = 7, weight = 15 }`, `"quoted"`) and as a string
//! otherwise (`inf`, `2024-01-01` and paths stay strings; quote a value to force a string).
//! `JITGATE_LOG`, `JITGATE_LOG_FORMAT`, `JITGATE_CONFIG`, `JITGATE_SERVER`, `JITGATE_TOKEN` and
//! `JITGATE_TEST_*` are not keys.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::decision::{EntityRef, GrantDefaults};
use crate::policy::PackPaths;

/// Environment variables with this prefix override configuration keys.
pub const ENV_PREFIX: &str = "JITGATE_";
/// Variables with the prefix that are not configuration keys.
/// Variables the command line reads for itself (`JITGATE_SERVER` and `JITGATE_TOKEN` are the
/// requester's, for `jitgate request`).
const ENV_NOT_KEYS: [&str; 5] = [
    "JITGATE_LOG",
    "JITGATE_LOG_FORMAT",
    "JITGATE_CONFIG",
    "JITGATE_SERVER",
    "JITGATE_TOKEN",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration, with every default of DESIGN §8.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    /// `iss` of issued tokens and the RFC 8414 issuer.
    pub issuer: String,
    /// Keys, the SQLite file and the dev issuer key.
    pub data_dir: PathBuf,
    /// "" = SQLite in `data_dir`.
    pub database_url: DatabaseUrl,
    /// The file holding the key-encryption key (base64 of 32 random bytes) that seals the
    /// signing keys kept in a PostgreSQL database.
    pub key_encryption_key_file: Option<PathBuf>,
    /// The key-encryption key itself, from the environment (`JITGATE_KEY_ENCRYPTION_KEY`).
    pub key_encryption_key: Option<Secret>,
    pub database: DatabaseConfig,
    pub signing_alg: SigningAlg,
    #[serde(deserialize_with = "duration")]
    pub default_ttl: Duration,
    #[serde(deserialize_with = "duration")]
    pub max_ttl: Duration,
    #[serde(deserialize_with = "duration")]
    pub pending_ttl: Duration,
    /// How far ahead a request's `not_before` may schedule its window.
    #[serde(deserialize_with = "duration")]
    pub max_schedule_ahead: Duration,
    pub default_audience: String,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// IANA name of the zone `context.time` is computed in.
    pub time_zone: String,
    /// How often the server signs the audit chain's head (and on shutdown).
    #[serde(deserialize_with = "duration")]
    pub audit_head_every: Duration,
    pub policy: PolicyConfig,
    pub identity: IdentityConfig,
    pub risk: RiskConfig,
    pub rate_limit: RateLimitConfig,
    pub http: HttpConfig,
    pub ui: UiConfig,
    pub webhooks: Vec<WebhookConfig>,
    /// Set by `jitgate serve --bench-…` flags in a `bench` build; never read from a file.
    #[cfg(feature = "bench")]
    #[serde(skip)]
    pub bench: BenchSwitches,
}

/// Switches that make a server unfit for anything but measurement, compiled only into builds
/// with the `bench` feature (`jitgate-load` compares the server against itself with them).
#[cfg(feature = "bench")]
#[derive(Debug, Clone, Copy, Default)]
pub struct BenchSwitches {
    /// Serve `POST /bench/stripped`: parse, decide, sign; no identity, store or metrics.
    pub stripped_endpoint: bool,
    /// Acknowledge every store write without writing it (no audit trail, no records).
    pub discard_writes: bool,
}

impl Default for Config {
    fn default() -> Self {
        let grants = GrantDefaults::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer: "http://127.0.0.1:8080".into(),
            data_dir: "data".into(),
            database_url: DatabaseUrl::default(),
            key_encryption_key_file: None,
            key_encryption_key: None,
            database: DatabaseConfig::default(),
            signing_alg: SigningAlg::Es256,
            default_ttl: grants.default_ttl,
            max_ttl: grants.max_ttl,
            pending_ttl: Duration::from_secs(3600),
            max_schedule_ahead: Duration::from_secs(7 * 24 * 3600),
            default_audience: grants.default_audience,
            trusted_proxies: Vec::new(),
            time_zone: "UTC".into(),
            audit_head_every: Duration::from_secs(60),
            policy: PolicyConfig::default(),
            identity: IdentityConfig::default(),
            risk: RiskConfig::default(),
            rate_limit: RateLimitConfig::default(),
            http: HttpConfig::default(),
            ui: UiConfig::default(),
            webhooks: Vec::new(),
            #[cfg(feature = "bench")]
            bench: BenchSwitches::default(),
        }
    }
}

/// `[database]`: how a replica uses a PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connections of the read pool (the writer has one more of its own).
    pub max_connections: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
        }
    }
}

/// `database_url`: read as text everywhere, printed without its password.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl std::ops::Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl fmt::Debug for DatabaseUrl {
    /// `scheme://user:…@host/db`: the password, if any, left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match self.0.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((user, host)) => {
                    let user = user.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:…@{host}")
                }
                None => self.0.clone(),
            },
            None => self.0.clone(),
        };
        write!(f, "{shown:?}")
    }
}

/// A value that is never printed (its `Debug` says only that it is set).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SigningAlg {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "RS256")]
    Rs256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
            SigningAlg::Rs256 => "RS256",
        }
    }

    /// The algorithm [`SigningAlg::as_str`] names.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Es256, Self::EdDsa, Self::Rs256]
            .into_iter()
            .find(|alg| alg.as_str() == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `*.cedar`, `entities.json`, `tests/`.
    pub dir: PathBuf,
    /// `*.cedarschema`.
    pub schemas: PathBuf,
    /// A candidate pack decided beside the live one on every decision, off the answer path.
    pub shadow: Option<ShadowPackConfig>,
}

/// `[policy.shadow]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowPackConfig {
    pub dir: PathBuf,
    /// Default: the live pack's schemas.
    pub schemas: Option<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: "policies".into(),
            schemas: "schemas".into(),
            shadow: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub dev: DevIdentityConfig,
    pub issuers: Vec<TrustedIssuerConfig>,
    pub api_keys: Vec<ApiKeyConfig>,
}

/// The dev issuer: trusts tokens minted by `jitgate dev-token`. Off unless enabled; the
/// quickstart (no config file) enables it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevIdentityConfig {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    pub issuer: String,
    pub audience: String,
    /// `https://…` or `file:///…`.
    pub jwks: String,
    pub algorithms: Vec<String>,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim that names the user (default `sub`; e.g. `email` for an IdP whose `sub` is
    /// opaque). A token without it is refused.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The `amr` entries (or the `acr` value) that mean a second factor was used.
    #[serde(default = "default_mfa_values")]
    pub mfa_values: Vec<String>,
    /// Put before the principal (e.g. `"partner|"`), so that this issuer's users are not another's.
    #[serde(default)]
    pub principal_prefix: String,
    /// The groups this issuer may assert, exact names or patterns with `*` (`"partner-*"`);
    /// others are dropped. Unset: every group it asserts.
    #[serde(default)]
    pub allowed_groups: Option<Vec<String>>,
    /// The UI signs people in with this issuer (OIDC authorization code + PKCE) as this
    /// client; its endpoints come from `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client's secret (`client_secret_basic`); unset for a public client.
    #[serde(default)]
    pub client_secret: Option<Secret>,
}

impl TrustedIssuerConfig {
    /// Whether this issuer may assert `group`.
    pub fn allows_group(&self, group: &str) -> bool {
        self.allowed_groups
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| glob_matches(p, group)))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.ends_with(last)
}

fn default_principal_claim() -> String {
    "sub".into()
}

/// RFC 8176's methods that are a second factor, or prove possession of a key.
pub const DEFAULT_MFA_VALUES: [&str; 4] = ["mfa", "otp", "hwk", "pop"];

fn default_mfa_values() -> Vec<String> {
    DEFAULT_MFA_VALUES.map(str::to_owned).to_vec()
}

fn default_groups_claim() -> String {
    "groups".into()
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    /// `sha256:<hex>` of the key: the secret of `client_secret_basic` and `client_secret_post`
    /// too. Optional for a client that authenticates with `jwks` alone.
    #[serde(default)]
    pub hash: Option<String>,
    /// `file:///path/to/jwks.json`: the public keys the client signs its `private_key_jwt`
    /// assertions with (RFC 7523).
    #[serde(default)]
    pub jwks: Option<String>,
    /// e.g. `Service::"deployer"`.
    pub principal: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("principal", &self.principal)
            .field("groups", &self.groups)
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

/// The approver UI as people reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// The UI's address as people open it (behind a proxy, say), which every notification links
    /// to; default: `issuer` followed by `/ui/`.
    pub public_url: Option<String>,
    /// A signed-in session unused this long ends.
    #[serde(deserialize_with = "duration")]
    pub session_idle: Duration,
    /// A signed-in session ends this long after sign-in, however busy.
    #[serde(deserialize_with = "duration")]
    pub session_max: Duration,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(8 * 3600),
        }
    }
}

/// Whether jitgate may fetch `url`: https, or plain http to this machine (an identity provider
/// beside it; nothing crosses a network unencrypted).
pub fn is_https_or_loopback(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Config {
    /// The UI's origin (`scheme://host[:port]`): where its sign-in callback is, and the only
    /// origin whose state-changing requests a session cookie authenticates.
    pub fn ui_origin(&self) -> String {
        let url = self.ui.public_url.as_deref().unwrap_or(&self.issuer);
        // As a browser serialises it in `Origin`: lower case, default port left out.
        match reqwest::Url::parse(url) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => url.to_owned(),
        }
    }

    /// The issuer the UI signs people in with (the one entry with a `client_id`).
    pub fn sign_in_issuer(&self) -> Option<(usize, &TrustedIssuerConfig)> {
        (self.identity.issuers.iter().enumerate()).find(|(_, issuer)| issuer.client_id.is_some())
    }

    /// The link to request `id`'s page in the UI.
    pub fn request_page(&self, id: &str) -> String {
        let base = match &self.ui.public_url {
            Some(url) => url.clone(),
            None => format!("{}/ui/", self.issuer.trim_end_matches('/')),
        };
        format!("{base}#request={id}")
    }
}

/// Risk signals (DESIGN §6); each is off when unset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    pub trusted_networks: Vec<IpNet>,
    /// Weight when the source is outside `trusted_networks`.
    pub outside_network: Option<u32>,
    /// Weight when the caller signed in without a second factor. API-key callers (services)
    /// have no second factor to show; they count as without one only with
    /// `no_mfa_for_api_keys = true`.
    pub no_mfa: Option<u32>,
    pub no_mfa_for_api_keys: bool,
    pub off_hours: Option<OffHoursConfig>,
    pub recent_denials: Option<RecentDenialsConfig>,
    pub request_rate: Option<RequestRateConfig>,
    pub new_source_ip: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffHoursConfig {
    /// Hour (0–23) off-hours start, in `time_zone`.
    pub start: u32,
    /// Hour (0–23) off-hours end.
    pub end: u32,
    pub weight: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentDenialsConfig {
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Weight of each denial in the window…
    pub each: u32,
    /// …up to this much.
    pub max: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRateConfig {
    /// Requests in the last minute above which the signal fires.
    pub per_minute: u32,
    pub weight: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_principal_per_minute: u32,
    /// Everything else a principal does that costs the server work or changes state (approve,
    /// deny, cancel, review, revoke, introspect, revocations, lifts, audit reads, the pending
    /// list), counted apart so that it neither eats the access-request budget nor raises the
    /// request-rate risk signal.
    pub operations_per_principal_per_minute: u32,
    /// Pending requests one call of the pending list checks with Cedar at most; past that it
    /// answers with a `next` cursor to continue from.
    pub pending_list_scan: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_principal_per_minute: 120,
            operations_per_principal_per_minute: 600,
            pending_list_scan: 500,
        }
    }
}

/// What one client connection may hold of the server: a client that sends half a request, or
/// none, is cut off instead of holding a socket and a task forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// From accepting a connection (or, on a kept-alive one, from the first byte of the next
    /// request) until the request's headers are complete.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// From the headers until the whole body is read; 408 beyond.
    #[serde(deserialize_with = "duration")]
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request in flight for this long is closed.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default = "default_webhook_format")]
    pub format: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub events: Vec<String>,
}

fn default_webhook_format() -> String {
    "json".into()
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            // Only the origin: a Slack webhook's path is its credential.
            .field(
                "url",
                &self.url.split('/').take(3).collect::<Vec<_>>().join("/"),
            )
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("events", &self.events)
            .finish()
    }
}

const WEBHOOK_EVENTS: [&str; 6] = [
    "request.pending",
    "request.approved",
    "request.denied",
    "request.expired",
    "request.cancelled",
    "break_glass",
];

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration: {e}")))
}

impl Config {
    /// The key-encryption key's base64 text, from `key_encryption_key_file` or the
    /// environment; `None` when neither is given.
    pub fn key_encryption_key_text(&self) -> Result<Option<Secret>, ConfigError> {
        match (&self.key_encryption_key, &self.key_encryption_key_file) {
            (Some(_), Some(_)) => Err(invalid(
                "key_encryption_key_file",
                "give the file or JITGATE_KEY_ENCRYPTION_KEY, not both",
            )),
            (Some(key), None) => Ok(Some(key.clone())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|text| Some(Secret(text)))
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                }),
            (None, None) => Ok(None),
        }
    }

    /// The quickstart: every default, the dev issuer on.
    pub fn quickstart() -> Self {
        let mut config = Config::default();
        config.identity.dev.enabled = true;
        config
    }

    /// Reads `path` (or, with `None`, starts from the defaults, with the dev issuer on when `env`
    /// sets no key either: the quickstart), applies the environment overrides in `env`, and
    /// validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX)
                    && !ENV_NOT_KEYS.contains(&name.as_str())
                    && !name.starts_with("JITGATE_TEST_")
            })
            .collect();
        env.sort();
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string().trim_end().replace('\n', " "),
                })?
            }
            // The bare quickstart trusts dev tokens; configuring through the environment is a
            // deployment, which enables the dev issuer only by saying so.
            None if env.is_empty() => {
                let mut table = toml::Table::new();
                let mut dev = toml::Table::new();
                dev.insert("enabled".into(), toml::Value::Boolean(true));
                let mut identity = toml::Table::new();
                identity.insert("dev".into(), toml::Value::Table(dev));
                table.insert("identity".into(), toml::Value::Table(identity));
                table
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            apply_env(&mut table, &name, &value)?;
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                invalid(
                    if key == "." { String::new() } else { key },
                    e.into_inner().message().to_owned(),
                )
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Creates `data_dir` (mode 0700: keys, the audit trail and requests' reasons live there)
    /// when it is missing, and warns when an existing one is open to group or others.
    pub fn ensure_data_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !self.data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.data_dir)?;
        }
        let mode = std::fs::metadata(&self.data_dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(data_dir = %self.data_dir.display(), mode = format!("{mode:o}"), "the data dir is open to group or others; chmod 700 it");
        }
        Ok(())
    }

    /// Pairs of trusted issuers that could name the same principal: neither has a
    /// `principal_prefix` that sets its users apart (one prefix begins the other, or both are
    /// empty), so one issuer's `sub` can be another's user.
    pub fn overlapping_issuers(&self) -> Vec<String> {
        let issuers = &self.identity.issuers;
        let mut warnings = Vec::new();
        for (i, a) in issuers.iter().enumerate() {
            for (j, b) in issuers.iter().enumerate().skip(i + 1) {
                let (p, q) = (&a.principal_prefix, &b.principal_prefix);
                if p.starts_with(q.as_str()) || q.starts_with(p.as_str()) {
                    warnings.push(format!(
                        "identity.issuers[{i}] ({}) and identity.issuers[{j}] ({}) can name the \
                         same principal: give each a principal_prefix that is not the start of \
                         the other's",
                        a.issuer, b.issuer
                    ));
                }
            }
        }
        warnings
    }

    pub fn pack_paths(&self) -> PackPaths {
        PackPaths::new(&self.policy.dir, &self.policy.schemas)
    }

    /// The shadow pack's paths, when `[policy.shadow]` names one.
    pub fn shadow_pack_paths(&self) -> Option<PackPaths> {
        let shadow = self.policy.shadow.as_ref()?;
        let schemas = shadow.schemas.as_ref().unwrap_or(&self.policy.schemas);
        Some(PackPaths::new(&shadow.dir, schemas))
    }

    pub fn grant_defaults(&self) -> GrantDefaults {
        GrantDefaults {
            default_ttl: self.default_ttl,
            max_ttl: self.max_ttl,
            default_audience: self.default_audience.clone(),
        }
    }

    /// Refuses the first setting that is out of range, in the order of the sections below.
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_top_level()?;
        self.validate_identity()?;
        self.validate_limits()?;
        self.validate_webhooks()
    }

    /// Lifetimes, HTTP limits, names and locations.
    fn validate_top_level(&self) -> Result<(), ConfigError> {
        for (key, ttl) in [
            ("default_ttl", self.default_ttl),
            ("max_ttl", self.max_ttl),
            ("pending_ttl", self.pending_ttl),
            ("max_schedule_ahead", self.max_schedule_ahead),
            ("audit_head_every", self.audit_head_every),
        ] {
            if ttl.as_secs() == 0 {
                return Err(invalid(key, "must be at least 1s"));
            }
        }
        for (key, timeout) in [
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.body_read_timeout", self.http.body_read_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(invalid(key, "must be more than 0s"));
            }
        }
        if self.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if self.default_ttl > self.max_ttl {
            return Err(invalid("default_ttl", "must not exceed max_ttl"));
        }
        if self.issuer.trim().is_empty() {
            return Err(invalid("issuer", "must not be empty"));
        }
        if self.default_audience.trim().is_empty() {
            return Err(invalid("default_audience", "must not be empty"));
        }
        if let Some(url) = &self.ui.public_url {
            let web = url.starts_with("https://") || url.starts_with("http://");
            if !web || url.contains('#') || url.contains(char::is_whitespace) {
                return Err(invalid(
                    "ui.public_url",
                    "must be an http(s) URL without a fragment, e.g. https://jitgate.example.com/ui/",
                ));
            }
        }
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(invalid(
                "time_zone",
                format!(
                    "unknown time zone `{}` (use an IANA name such as `Europe/Berlin`)",
                    self.time_zone
                ),
            ));
        }
        if !(1..=1_000).contains(&self.database.max_connections) {
            return Err(invalid("database.max_connections", "must be 1 to 1000"));
        }
        if !self.database_url.is_empty()
            && !self.database_url.starts_with("sqlite:")
            && !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
        {
            return Err(invalid(
                "database_url",
                "use \"\", sqlite://… or postgres://…",
            ));
        }
        Ok(())
    }

    /// Token issuers and API keys.
    fn validate_identity(&self) -> Result<(), ConfigError> {
        for (i, issuer) in self.identity.issuers.iter().enumerate() {
            let key = |field: &str| format!("identity.issuers[{i}].{field}");
            if issuer.issuer.trim().is_empty() {
                return Err(invalid(key("issuer"), "must not be empty"));
            }
            if issuer.audience.trim().is_empty() {
                return Err(invalid(key("audience"), "must not be empty"));
            }
            if !is_https_or_loopback(&issuer.jwks) && !issuer.jwks.starts_with("file://") {
                return Err(invalid(
                    key("jwks"),
                    "must be an https:// or file:// URL (http:// only to this machine)",
                ));
            }
            if let Some(client_id) = &issuer.client_id {
                if client_id.trim().is_empty() {
                    return Err(invalid(key("client_id"), "must not be empty"));
                }
                if !is_https_or_loopback(&issuer.issuer) {
                    return Err(invalid(
                        key("client_id"),
                        "signing in needs the issuer at an https:// URL (http:// only to this machine), where its /.well-known/openid-configuration is",
                    ));
                }
            }
            if issuer.principal_claim.trim().is_empty() {
                return Err(invalid(key("principal_claim"), "must not be empty"));
            }
            if issuer.mfa_values.iter().any(|v| v.trim().is_empty()) {
                return Err(invalid(key("mfa_values"), "a value must not be empty"));
            }
            if let Some(patterns) = &issuer.allowed_groups
                && patterns.iter().any(|p| p.trim().is_empty())
            {
                return Err(invalid(
                    key("allowed_groups"),
                    "a pattern must not be empty",
                ));
            }
            if issuer.algorithms.is_empty() {
                return Err(invalid(key("algorithms"), "name at least one algorithm"));
            }
            for alg in &issuer.algorithms {
                let accepted = alg
                    .parse::<jsonwebtoken::Algorithm>()
                    .is_ok_and(|alg| jitgate_verify::jwt::ASYMMETRIC_ALGORITHMS.contains(&alg));
                if !accepted {
                    return Err(invalid(
                        key("algorithms"),
                        format!("`{alg}` is not an asymmetric JWS algorithm jitgate accepts"),
                    ));
                }
            }
        }
        let signing_in = self
            .identity
            .issuers
            .iter()
            .filter(|i| i.client_id.is_some());
        if signing_in.count() > 1 {
            return Err(invalid(
                "identity.issuers",
                "only one issuer may have a client_id: the UI signs people in with it",
            ));
        }
        let with_userinfo = |url: &str| {
            reqwest::Url::parse(url)
                .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
        };
        if with_userinfo(&self.issuer) || self.ui.public_url.as_deref().is_some_and(with_userinfo) {
            return Err(invalid(
                "ui.public_url",
                "the UI's address (ui.public_url, else issuer) must not carry a user name or password",
            ));
        }
        if self.sign_in_issuer().is_some() && !is_https_or_loopback(&self.ui_origin()) {
            return Err(invalid(
                "ui.public_url",
                "signing in to the UI needs it served over https:// (http:// only on this machine): \
                 set ui.public_url, or issuer, to its https address",
            ));
        }
        for (key, value) in [
            ("ui.session_idle", self.ui.session_idle),
            ("ui.session_max", self.ui.session_max),
        ] {
            if value.as_secs() < 60 {
                return Err(invalid(key, "must be at least 1m"));
            }
        }
        if self.ui.session_idle > self.ui.session_max {
            return Err(invalid("ui.session_idle", "must not exceed ui.session_max"));
        }
        for (i, api_key) in self.identity.api_keys.iter().enumerate() {
            let key = |field: &str| format!("identity.api_keys[{i}].{field}");
            if api_key.hash.is_none() && api_key.jwks.is_none() {
                return Err(invalid(
                    key("hash"),
                    "give the key's hash, a `jwks` for private_key_jwt, or both",
                ));
            }
            if let Some(hash) = &api_key.hash {
                let hex = hash.strip_prefix("sha256:").unwrap_or_default();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(key("hash"), "must be sha256:<64 hex digits>"));
                }
            }
            if let Some(jwks) = &api_key.jwks
                && !jwks.starts_with("file://")
            {
                return Err(invalid(key("jwks"), "must be a file:// URL of a JWK set"));
            }
            api_key
                .principal
                .parse::<EntityRef>()
                .map_err(|e| invalid(key("principal"), e))?;
            for group in &api_key.groups {
                group
                    .parse::<EntityRef>()
                    .map_err(|e| invalid(key("groups"), e))?;
            }
        }
        Ok(())
    }

    /// Risk scoring and rate limits.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        if let Some(off) = &self.risk.off_hours
            && (off.start > 23 || off.end > 23)
        {
            return Err(invalid("risk.off_hours", "start and end are hours 0-23"));
        }
        if self.rate_limit.per_principal_per_minute == 0 {
            return Err(invalid(
                "rate_limit.per_principal_per_minute",
                "must be at least 1",
            ));
        }
        if self.rate_limit.operations_per_principal_per_minute == 0 {
            return Err(invalid(
                "rate_limit.operations_per_principal_per_minute",
                "must be at least 1",
            ));
        }
        if self.rate_limit.pending_list_scan == 0 {
            return Err(invalid(
                "rate_limit.pending_list_scan",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        for (i, hook) in self.webhooks.iter().enumerate() {
            let key = |field: &str| format!("webhooks[{i}].{field}");
            if !hook.url.starts_with("https://") && !hook.url.starts_with("http://") {
                return Err(invalid(key("url"), "must be an http(s) URL"));
            }
            if self.webhooks.iter().take(i).any(|h| h.url == hook.url) {
                return Err(invalid(key("url"), "the same url is listed twice"));
            }
            if hook.format != "json" && hook.format != "slack" {
                return Err(invalid(key("format"), "must be \"json\" or \"slack\""));
            }
            if hook.secret.is_some() && hook.secret_file.is_some() {
                return Err(invalid(
                    key("secret"),
                    "give secret or secret_file, not both",
                ));
            }
            if hook.format == "json" && hook.secret.is_none() && hook.secret_file.is_none() {
                return Err(invalid(
                    key("secret"),
                    "json webhooks are signed: give secret or secret_file",
                ));
            }
            if let Some(event) = hook
                .events
                .iter()
                .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
            {
                return Err(invalid(
                    key("events"),
                    format!(
                        "unknown event `{event}`; known: {}",
                        WEBHOOK_EVENTS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Sets the key `JITGATE_A__B` names in `table`.
fn apply_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name
        .trim_start_matches(ENV_PREFIX)
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let (last, parents) = match path.split_last() {
        Some((last, parents)) if !last.is_empty() && parents.iter().all(|p| !p.is_empty()) => {
            (last, parents)
        }
        _ => return Err(invalid(name, "not a configuration key")),
    };
    // Arrays, tables, quoted strings, booleans and whole numbers are TOML; anything else (a
    // path, an audience, `inf`, a date) is the string it looks like.
    let trimmed = value.trim();
    let looks_like_toml = trimmed.starts_with(['[', '{', '"', '\''])
        || trimmed == "true"
        || trimmed == "false"
        || (!trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()));
    let parsed = looks_like_toml
        .then(|| toml::from_str::<toml::Table>(&format!("v = {value}")).ok())
        .flatten()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut node = table;
    for part in parents {
        let entry = node
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(inner) => inner,
            _ => return Err(invalid(name, format!("`{part}` is not a table"))),
        };
    }
    node.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests;
