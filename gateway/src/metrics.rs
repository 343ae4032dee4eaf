//! Prometheus metrics: requests and their latency per route, command
//! (append) latency per command, and each background part's state (whether
//! it follows the log, its lag, how often it ran again after a fault) and
//! whether the database answers, rendered at `/metrics` in the text
//! exposition format.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::state::AppState;

/// The registry and the metrics the gateway updates.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    commands: HistogramVec,
    lag: IntGaugeVec,
    position: IntGaugeVec,
    following: IntGaugeVec,
    restarts: IntGaugeVec,
    lease_held: IntGaugeVec,
    database_up: prometheus::IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("shareledger".into()), None).expect("a valid metrics prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        let commands = HistogramVec::new(
            HistogramOpts::new(
                "command_duration_seconds",
                "Time to decide and append a command, by command and outcome",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["command", "outcome"],
        )
        .expect("valid metric");
        let lag = IntGaugeVec::new(
            Opts::new(
                "part_lag_events",
                "Events of the log (as far as this process knows it) a background part has not applied yet",
            ),
            &["part"],
        )
        .expect("valid metric");
        let position = IntGaugeVec::new(
            Opts::new(
                "part_position",
                "The log position a background part has applied (the relay: delivered and acknowledged); its rate is the part's throughput in events/s",
            ),
            &["part"],
        )
        .expect("valid metric");
        let following = IntGaugeVec::new(
            Opts::new(
                "part_following",
                "1 while a background part follows the log, 0 while it retries after a fault, has failed or has stopped",
            ),
            &["part"],
        )
        .expect("valid metric");
        let restarts = IntGaugeVec::new(
            Opts::new(
                "part_restarts",
                "How many times a background part ran again after a transient fault",
            ),
            &["part"],
        )
        .expect("valid metric");
        let lease_held = IntGaugeVec::new(
            Opts::new(
                "part_lease_held",
                "For a part that runs in one process at a time: 1 while this process holds its lease (runs it), 0 while another does (this one is a standby)",
            ),
            &["part"],
        )
        .expect("valid metric");
        let database_up = prometheus::IntGauge::new(
            "database_up",
            "1 when the database answered the last probe (/ready, /metrics) in time",
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(commands.clone()),
            Box::new(lag.clone()),
            Box::new(position.clone()),
            Box::new(following.clone()),
            Box::new(restarts.clone()),
            Box::new(lease_held.clone()),
            Box::new(database_up.clone()),
        ] {
            registry.register(metric).expect("metrics registered once");
        }
        Self {
            registry,
            requests,
            latency,
            commands,
            lag,
            position,
            following,
            restarts,
            lease_held,
            database_up,
        }
    }

    /// Records one command's duration.
    pub fn command(&self, name: &str, ok: bool, started: Instant) {
        self.commands
            .with_label_values(&[name, if ok { "ok" } else { "refused" }])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sets a background part's figures.
    pub fn set_part(&self, part: &str, following: bool, position: u64, lag: u64, restarts: u64) {
        let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
        self.following
            .with_label_values(&[part])
            .set(i64::from(following));
        self.lag.with_label_values(&[part]).set(clamp(lag));
        self.position
            .with_label_values(&[part])
            .set(clamp(position));
        self.restarts
            .with_label_values(&[part])
            .set(clamp(restarts));
    }

    /// Sets whether this process holds a leased part's lease.
    pub fn set_lease(&self, part: &str, held: bool) {
        self.lease_held
            .with_label_values(&[part])
            .set(i64::from(held));
    }

    /// Sets whether the database answered.
    pub fn set_database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request by its matched route.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics
        .latency
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}
