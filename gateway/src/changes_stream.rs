//! The changes feed as Server-Sent Events: `GET /v1/changes` with
//! `Accept: text/event-stream`.
//!
//! The stream starts after `after`, or after the `Last-Event-ID` header a
//! reconnecting client sends, and goes on without end:
//! * `event: change`, `id:` the event's position, `data:` the event as a
//!   page shows it (the caller's scope and filters apply as to pages);
//! * a comment (`: heartbeat`) every [`HEARTBEAT`], so that proxies and
//!   clients know the stream is alive;
//! * `event: dropped`, then the end: the client read too slowly and fell
//!   more than [`live_feed::CAPACITY`](crate::live_feed::CAPACITY) events
//!   behind the log; `data` says so and gives `resume_after`, the last
//!   position the stream looked at (reconnect with it as `Last-Event-ID`);
//! * `event: closed`, then the end: every [`REAUTHORIZE`] the stream asks
//!   again whether the token allows the feed (revoked, expired, or its user
//!   no longer an administrator); `data` is the problem.
//!
//! The stream first reads the log from the database up to the head, then
//! follows the shared broadcast ([`crate::live_feed`]); an event the
//! broadcast skipped (it started after the client's position) is read from
//! the database, so positions are delivered in order with no gap.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::{header, HeaderMap, Request};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shareledger_events::store::PositionFrom;
use shareledger_events::{Direction, RecordedEvent};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::auth::Principal;
use crate::changes::{Change, Filter};
use crate::error::ApiError;
use crate::state::AppState;

/// How often a heartbeat comment goes out on a quiet stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often the stream asks again whether the token allows it.
pub const REAUTHORIZE: Duration = Duration::from_secs(5);

/// Whether the request asks for Server-Sent Events.
pub(crate) fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// Where a stream starts: after the `Last-Event-ID` a reconnecting
/// client sends, else after `after`.
pub(crate) fn start_after(headers: &HeaderMap, after: u64) -> Result<u64, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(after),
        Some(raw) => raw
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::InvalidQuery(
                    "Last-Event-ID must be a position of the log (a whole number)".into(),
                )
            }),
    }
}

/// The stream's response, from after `after`.
pub(crate) fn stream(state: AppState, headers: HeaderMap, filter: Filter, after: u64) -> Response {
    let live = state.live_feed().subscribe(state.store());
    let reader = Reader {
        closing: state.closing(),
        authorized_at: Instant::now(),
        state,
        headers,
        filter,
        live,
        backlog: VecDeque::new(),
        looked_at: after,
        catching_up: true,
        done: false,
    };
    let events = futures::stream::unfold(reader, |mut reader| async move {
        reader
            .next()
            .await
            .map(|event| (Ok::<_, Infallible>(event), reader))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response()
}

/// One client's place in the feed.
struct Reader {
    /// The service is stopping: the stream ends.
    closing: tokio::sync::watch::Receiver<bool>,
    state: AppState,
    headers: HeaderMap,
    filter: Filter,
    live: broadcast::Receiver<Arc<RecordedEvent>>,
    /// Events read from the database, to go out before the broadcast's.
    backlog: VecDeque<RecordedEvent>,
    /// The last position handed out or skipped by the filter.
    looked_at: u64,
    /// Reading the database up to its head, before following the broadcast.
    catching_up: bool,
    authorized_at: Instant,
    done: bool,
}

impl Reader {
    /// The next event of the stream; none: the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.done || *self.closing.borrow() {
                return None;
            }
            if self.authorized_at.elapsed() >= REAUTHORIZE {
                if let Err(problem) = self.reauthorize().await {
                    self.done = true;
                    return Some(closing("closed", problem));
                }
            }
            if let Some(event) = self.backlog.pop_front() {
                if let Some(out) = self.hand_out(event) {
                    return Some(out);
                }
                continue;
            }
            if self.catching_up {
                match self.read_after(self.looked_at, None).await {
                    Ok(0) => {
                        // Caught up: follow the broadcast from now (what it
                        // held is read already; a gap is read as it shows).
                        self.catching_up = false;
                        self.live = self.live.resubscribe();
                    }
                    Ok(_) => {}
                    Err(problem) => {
                        self.done = true;
                        return Some(closing("closed", problem));
                    }
                }
                continue;
            }
            let until_reauthorize = REAUTHORIZE.saturating_sub(self.authorized_at.elapsed());
            let received = tokio::select! {
                received = tokio::time::timeout(until_reauthorize, self.live.recv()) => received,
                _ = self.closing.wait_for(|closing| *closing) => return None,
            };
            match received {
                Err(_) => continue,
                Ok(Ok(event)) => {
                    let position = event.global_position;
                    if position <= self.looked_at {
                        continue;
                    }
                    if position > self.looked_at + 1 {
                        // The broadcast started after this client's place:
                        // read the gap from the database first.
                        if let Err(problem) = self.read_after(self.looked_at, Some(position)).await
                        {
                            self.done = true;
                            return Some(closing("closed", problem));
                        }
                    }
                    self.backlog.push_back((*event).clone());
                }
                Ok(Err(RecvError::Lagged(missed))) => {
                    self.done = true;
                    let detail = format!(
                        "this client read too slowly and fell {missed} events behind the log; \
                         reconnect with Last-Event-ID {} to resume",
                        self.looked_at
                    );
                    return Some(
                        Event::default().event("dropped").data(
                            json!({
                                "code": "slow_consumer",
                                "detail": detail,
                                "resume_after": self.looked_at,
                            })
                            .to_string(),
                        ),
                    );
                }
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    }

    /// The event as a message if the client's filter wants it.
    fn hand_out(&mut self, event: RecordedEvent) -> Option<Event> {
        if event.global_position <= self.looked_at {
            return None;
        }
        self.looked_at = event.global_position;
        if !self.filter.wants(&event) {
            return None;
        }
        let id = event.global_position.to_string();
        let data = serde_json::to_string(&Change::of(event)).expect("an event serializes");
        Some(Event::default().event("change").id(id).data(data))
    }

    /// Reads the events after `after` (before `before`) into the backlog,
    /// one page; how many.
    async fn read_after(&mut self, after: u64, before: Option<u64>) -> Result<usize, ApiError> {
        let mut read = 0;
        let mut from = after;
        loop {
            let want = before.map_or(1_000, |b| (b - from - 1).min(1_000) as usize);
            if want == 0 {
                return Ok(read);
            }
            let page = self
                .state
                .store()
                .read_all(Direction::Forwards, PositionFrom::At(from + 1), want)
                .await
                .map_err(crate::changes::command_log)?;
            let Some(last) = page.last().map(|e| e.global_position) else {
                return Ok(read);
            };
            read += page.len();
            from = last;
            self.backlog.extend(page);
            if before.is_none() {
                return Ok(read);
            }
        }
    }

    /// Asks again whether the request's token allows the feed, with the
    /// same scope.
    async fn reauthorize(&mut self) -> Result<(), ApiError> {
        let mut request = Request::new(());
        *request.headers_mut() = self.headers.clone();
        let (mut parts, ()) = request.into_parts();
        let principal = Principal::from_request_parts(&mut parts, &self.state).await?;
        self.filter.scope = crate::changes::scope(&self.state, &principal).await?;
        self.authorized_at = Instant::now();
        Ok(())
    }
}

/// The last message of a stream that ends for `problem`.
fn closing(name: &str, problem: ApiError) -> Event {
    let (status, code) = problem.status_and_code();
    Event::default().event(name).data(
        json!({
            "status": status.as_u16(),
            "code": code,
            "detail": problem.to_string(),
        })
        .to_string(),
    )
}
