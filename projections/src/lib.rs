//! ShareLedger's read models, built from the event log.
//!
//! * [`access`]: the in-memory access index that answers Q-1 to Q-4 (check,
//!   lookup, reverse lookup, explain) in the serving process, kept current
//!   from the log, with consistency tokens (wait until position P).
//! * [`projection`]: the contract of a read model kept in PostgreSQL tables.
//! * [`runtime`]: runs such projections from their checkpoints (writes and
//!   checkpoint commit together), rebuilds them beside the live ones and
//!   switches, and reports position and lag.
//! * [`dashboard`]: the PostgreSQL read models: Q-5 dashboards and the
//!   persisted access tables for SQL consumers.
//! * [`decode`]: turning recorded events into catalog events.
//! * [`relay`]: delivering the log to NATS JetStream, every event once and
//!   in log order.
//!
//! `docs/access-model.md` defines who can see what; `docs/read-models.md`
//! describes the tables and the runtime.

pub mod access;
pub mod dashboard;
pub mod decode;
pub mod derived;
pub mod error;
mod follow;
pub mod history;
pub mod projection;
pub mod relay;
pub mod runtime;
pub mod timeline;

pub use error::ProjectionError;

/// Every SQL read model the service runs: the dashboards and access tables
/// and the sharing timelines.
pub fn read_models() -> Vec<std::sync::Arc<dyn projection::SqlProjection>> {
    let mut all = dashboard::all();
    all.push(timeline::timeline());
    all
}
