//! `GET /v1/events`: Server-Sent Events of what happens to the caller's requests and to the
//! pending requests it may approve ([`crate::access::events`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};

use super::error::ApiError;
use super::guard::Privileged;
use crate::access::AppState;
use crate::access::events::{self, LiveEvent, POLL_EVERY};

/// A stream ends after this long; the client reconnects (`EventSource` does by itself, with
/// `Last-Event-ID`) and is authenticated again, so a revoked or expired caller stops hearing.
const STREAM_FOR: Duration = Duration::from_secs(300);

/// The stream's state between events.
struct Following {
    state: AppState,
    caller: crate::identity::Caller,
    after: i64,
    queue: VecDeque<LiveEvent>,
    until: Instant,
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "approvals",
    params(("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event (the `id` of the last one received)")),
    responses(
        ApiError,
        (status = 200, description = "Server-Sent Events, each `data` a LiveEvent, its `id` the trail's seq; the stream ends after 5 minutes, to be reopened.", body = LiveEvent, content_type = "text/event-stream"),
    ),
    security(("bearer" = [])),
)]
pub async fn events(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_seen = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidRequest("Last-Event-ID is not an event id".into())
                })?,
        ),
    };
    let after = events::start(&state, last_seen).await?;
    let following = Following {
        state,
        caller,
        after,
        queue: VecDeque::new(),
        until: Instant::now() + STREAM_FOR,
    };
    let stream = stream::unfold(following, |mut f| async move {
        loop {
            if let Some(live) = f.queue.pop_front() {
                let event = Event::default()
                    .id(live.seq.to_string())
                    .event(live.kind.clone())
                    .json_data(&live)
                    .unwrap_or_else(|_| Event::default().comment("unserializable event"));
                return Some((Ok(event), f));
            }
            if Instant::now() >= f.until {
                return None;
            }
            match events::next(&f.state, &f.caller, f.after).await {
                Ok((found, last)) => {
                    f.after = last;
                    if found.is_empty() {
                        tokio::time::sleep(POLL_EVERY).await;
                    }
                    f.queue.extend(found);
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "cannot read events for a live stream");
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
