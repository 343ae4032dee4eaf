//! ShareLedger's decisions: given what happened (events folded into state)
//! and what is asked (a command), what happens next. Pure functions, no IO:
//! this crate depends on the event catalog alone (`shareledger-events`
//! without its `store` feature), so its decisions cannot fail for
//! infrastructure reasons, only for domain reasons ([`DomainError`]).
//!
//! Each command is a struct named in the imperative (`AddUser`,
//! `GrantScorecardAccess`, `DeactivateUser`, …) with a `decide` method that
//! takes the acting [`Actor`](shareledger_events::Actor) and the states it
//! needs, and returns the past-tense events to append, or the reason it is
//! refused. Loading those states and appending the events is the command
//! service's job (it does IO; this crate does not).
//!
//! Modules:
//! * [`site`]: sites and users (R-USER-*, R-ONB-*), and [`site::authorize`].
//! * [`csv_import`]: parsing a users CSV (R-USER-8).
//! * [`error`]: [`DomainError`], with a stable code per variant.

pub mod csv_import;
pub mod error;
pub mod site;

pub use error::{DomainError, RowError};
/// The event catalog this crate decides over, re-exported so that callers and
/// tests name one path.
pub use shareledger_events::catalog;
pub use shareledger_events::envelope;
