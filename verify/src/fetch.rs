//! GETs of JSON from the jitgate server (metadata, JWKS, the revocation feed): hyper with rustls
//! on AWS-LC, certificates checked as the platform checks them — what reqwest would do, without
//! the half of this crate's dependency tree that reqwest brings. Redirects are not followed, as
//! jitgate's own JWKS fetches do not follow them.

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::VerifyError;

/// For the whole exchange: connecting, the answer and its body.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Larger answers are refused; no JWKS or feed page comes near.
const MAX_BODY_BYTES: usize = 16 << 20;

/// An HTTP(S) client, cheap to clone (its connection pool is shared).
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

/// `error` with its sources, which say what actually failed (hyper's own message is generic).
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

impl Http {
    pub(crate) fn new() -> Result<Self, VerifyError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| VerifyError::Fetch {
                url: String::new(),
                message: format!("TLS: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// The JSON document at `url`, sent `bearer` as its credential when given.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<T, VerifyError> {
        let fail = |message: String| VerifyError::Fetch {
            url: url.to_owned(),
            message,
        };
        let mut request = hyper::Request::get(url).header(ACCEPT, "application/json");
        if let Some(bearer) = bearer {
            let mut value = HeaderValue::try_from(format!("Bearer {bearer}"))
                .map_err(|_| fail("the credential is not a valid header value".into()))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| fail(with_sources(&e)))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(with_sources(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(fail(format!("HTTP {status}")));
            }
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| fail(with_sources(e.as_ref())))?;
            Ok(body.to_bytes())
        };
        let body = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {} s", TIMEOUT.as_secs())))??;
        serde_json::from_slice(&body).map_err(|e| fail(format!("not the JSON expected: {e}")))
    }
}
