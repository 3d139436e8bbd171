//! The application core: what jitgate does for a caller, whatever carried the call there (HTTP
//! today; the OAuth token endpoint and the approvers' SSO pages next). Each service takes an
//! authenticated [`Caller`] and a typed command and returns a typed outcome or an [`ApiError`];
//! the rules that are not HTTP's (rate limits, who may do what, what is recorded before a
//! token leaves) live here, and the HTTP handlers only extract, call and answer.
//!
//! - [`ask`]: an access request decided, recorded and (when allowed) issued; the dry run.
//! - [`approval`]: reading, approving, denying, cancelling and reviewing escalated requests;
//!   [`mint`]: the token of an approved request.
//! - [`revocation`]: revoking, lifting, the feed and introspection.
//! - [`trail`]: the audit trail for administrators and its signed heads.
//! - [`answer`]: the shapes every outcome is answered in; [`refusal`]: refusals that leave a
//!   trace.

pub mod answer;
pub mod approval;
pub mod ask;
mod assemble;
pub mod cluster;
pub mod dpop;
mod error;
mod evaluate;
pub mod events;
pub mod extend;
pub mod housekeeping;
pub(crate) mod issue;
pub mod keys;
pub mod mint;
pub mod poll;
mod readiness;
pub mod refusal;
pub mod requestable;
pub mod revocation;
pub mod session;
pub mod shadow;
pub mod stages;
mod status;
pub mod trail;

use std::sync::Arc;

pub use assemble::{StartError, build};
pub use error::ApiError;
pub use status::{Answer, AuditKind, RequestStatus};

use crate::clock::SharedClock;
use crate::clock::stored_secs;
use crate::config::Config;
use crate::decision::{DecisionContext, DecisionRequest, EntityRef, Outcome, RequestTime};
use crate::identity::Authenticator;
use crate::identity::Caller;
use crate::identity::subject::resolve_subject;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::policy::LivePolicies;
use crate::risk::RequestRates;
use crate::store::Store;
use crate::token::TokenIssuer;

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub policies: Arc<LivePolicies>,
    pub auth: Authenticator,
    pub tokens: TokenIssuer,
    pub store: Store,
    pub metrics: Metrics,
    pub notifier: Arc<Notifier>,
    /// Access requests, dry runs and mints per principal (also the request-rate risk signal).
    pub rates: RequestRates,
    /// Every other operation per principal.
    pub operation_rates: RequestRates,
    pub time_zone: jiff::tz::TimeZone,
    /// The (seq, hash) this process signed last: a chain that no longer holds it was rewritten
    /// under the server, and the server does not sign over the rewrite.
    pub last_signed_head: std::sync::Mutex<Option<(i64, String)>>,
    pub clock: SharedClock,
    /// The store's last answer to `/readyz`'s probe.
    pub readiness: readiness::Readiness,
    /// This process among the replicas.
    pub replica: cluster::Replica,
    /// Seals the signing keys a shared database keeps (`None`: keys are files).
    pub key_encryption_key: Option<Arc<crate::token::KeyEncryptionKey>>,
    /// When each escalated request was last polled through the token endpoint.
    pub polls: poll::PollPace,
    /// The candidate pack decided beside the live one, when `[policy.shadow]` names one.
    pub shadow: Option<Arc<shadow::Shadow>>,
}

pub type AppState = Arc<App>;

impl App {
    /// Whether Cedar lets `caller` administer jitgate (`administer` on `Jitgate::"jitgate"`).
    pub fn may_administer(&self, caller: &Caller) -> bool {
        let question = DecisionRequest {
            principal: caller.principal.clone(),
            groups: caller.groups.clone(),
            action: "administer".into(),
            resource: EntityRef::new("Jitgate", "jitgate"),
            context: DecisionContext::Other(serde_json::Map::new()),
            scopes: Vec::new(),
            duration: None,
        };
        crate::decision::decide(
            &self.policies.current(),
            &question,
            &self.config.grant_defaults(),
        )
        .is_ok_and(|d| d.outcome == Outcome::Allow)
    }

    /// The principal an administrator means by `subject` (see [`resolve_subject`]): 400 for a
    /// value no caller could ever be.
    pub fn resolve_subject(&self, subject: &str) -> Result<EntityRef, ApiError> {
        let api_keys: Vec<EntityRef> = (self.config.identity.api_keys.iter())
            .filter_map(|key| key.principal.parse().ok())
            .collect();
        resolve_subject(subject, &api_keys).map_err(|e| ApiError::InvalidRequest(e.to_string()))
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Unix seconds now, as the store keeps them.
    pub fn now_stored(&self) -> i64 {
        stored_secs(self.clock.now())
    }

    /// Counts an access request (or dry run, or mint) of `principal` against its rate limit;
    /// the count in the last minute is also a risk signal.
    pub fn admit(&self, principal: &str) -> Result<usize, ApiError> {
        let limit = self.config.rate_limit.per_principal_per_minute as usize;
        within_limit(&self.rates, principal, limit, self.now_ms())
    }

    /// Counts a sign-in step (`/auth/login`, `/auth/callback`) from `ip` against a limit of
    /// its own, low because each starts a stored sign-in or a call to the identity provider
    /// and needs no credential; an IPv6 client counts by its /64, which it may have whole.
    pub fn admit_sign_in(&self, ip: std::net::IpAddr) -> Result<(), ApiError> {
        let from = match ip {
            std::net::IpAddr::V6(v6) => {
                let prefix = ipnet::Ipv6Net::new(v6, 64).map(|net| net.trunc());
                prefix.map_or_else(|_| v6.to_string(), |net| net.to_string())
            }
            v4 => v4.to_string(),
        };
        within_limit(
            &self.operation_rates,
            &format!("sign-in from {from}"),
            SIGN_INS_PER_ADDRESS_PER_MINUTE,
            self.now_ms(),
        )
        .map(|_| ())
    }

    /// Counts any other operation of `principal` against its own limit.
    pub fn admit_operation(&self, principal: &str) -> Result<(), ApiError> {
        let limit = self.config.rate_limit.operations_per_principal_per_minute as usize;
        within_limit(&self.operation_rates, principal, limit, self.now_ms()).map(|_| ())
    }

    /// `context.time` for a request at `unix`, in the configured zone.
    pub fn request_time(&self, unix: u64) -> RequestTime {
        let unix = stored_secs(unix);
        let offset = jiff::Timestamp::from_second(unix)
            .map(|ts| i64::from(self.time_zone.to_offset(ts).seconds()))
            .unwrap_or(0);
        RequestTime::from_unix(unix, offset)
    }
}

/// Sign-in steps one address may take a minute (a person needs two per sign-in).
const SIGN_INS_PER_ADDRESS_PER_MINUTE: usize = 30;

fn within_limit(
    rates: &RequestRates,
    principal: &str,
    limit: usize,
    now_ms: i64,
) -> Result<usize, ApiError> {
    rates
        .admit(principal, limit, now_ms)
        .map_err(|wait| ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        })
}

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
