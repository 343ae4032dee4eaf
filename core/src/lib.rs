//! ShareLedger's decisions: given what happened (events) and what is asked
//! (a command), what happens next. Pure functions, no IO: this crate depends
//! on the event catalog alone (`shareledger-events` without its `store`
//! feature) and can neither read nor write the log.
//!
//! The domain's commands, aggregates and rules (DOMAIN.md's R-USER, R-CONN,
//! R-SHARE and R-ONB) arrive with the domain-core issue; today the crate only
//! fixes that boundary, which `tests/` and the workspace layout rely on.

/// The event catalog this crate decides over, re-exported so that callers and
/// tests name one path.
pub use shareledger_events::envelope;
