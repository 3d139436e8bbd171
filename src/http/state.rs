//! What every handler shares.

use std::sync::Arc;

use super::error::ApiError;
use crate::clock::SharedClock;
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

    /// `context.time` for a request at `unix`, in the configured zone.
    pub fn request_time(&self, unix: u64) -> RequestTime {
        let unix = i64::try_from(unix).unwrap_or(i64::MAX);
        let offset = jiff::Timestamp::from_second(unix)
            .map(|ts| i64::from(self.time_zone.to_offset(ts).seconds()))
            .unwrap_or(0);
        RequestTime::from_unix(unix, offset)
    }
}
