//! jitgate issues short-lived, narrowly scoped access tokens at the moment of need, decided by
//! hot-reloaded Cedar policies.
//!
//! The library holds everything but the process entry point, so each part is testable without
//! HTTP: [`policy`] loads and serves policy packs, [`decision`] turns a request into a
//! [`decision::Decision`], [`policytest`] runs policy test cases, [`identity`] says who is
//! calling, [`risk`] scores the request, [`token`] signs access tokens and publishes their keys,
//! [`store`] keeps requests and the audit trail (a hash chain, [`audit`]), [`notify`] tells webhooks what happened,
//! [`verify`] (the `jitgate-verify` crate) checks issued tokens, and [`http`] serves it all ([`http::run`]); [`config`], [`metrics`] and [`telemetry`] support it, and
//! [`cli`] is the command line.

pub mod access;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decision;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod policytest;
pub mod risk;
pub mod store;
pub mod telemetry;
pub mod token;
pub use jitgate_verify as verify;
