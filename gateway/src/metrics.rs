//! Prometheus metrics: requests and their latency per route, command
//! (append) latency per command, and the read models' lag, rendered at
//! `/metrics` in the text exposition format.

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
                "projection_lag_events",
                "Events of the log a read model has not applied yet",
            ),
            &["projection"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(commands.clone()),
            Box::new(lag.clone()),
        ] {
            registry.register(metric).expect("metrics registered once");
        }
        Self {
            registry,
            requests,
            latency,
            commands,
            lag,
        }
    }

    /// Records one command's duration.
    pub fn command(&self, name: &str, ok: bool, started: Instant) {
        self.commands
            .with_label_values(&[name, if ok { "ok" } else { "refused" }])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sets a read model's lag.
    pub fn set_lag(&self, projection: &str, lag: u64) {
        self.lag
            .with_label_values(&[projection])
            .set(lag.min(i64::MAX as u64) as i64);
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
