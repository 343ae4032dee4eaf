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
//! * [`access_rule`]: the access rule, a user's level on a scorecard or an
//!   object from the facts it reads (R-USER-3, R-USER-4, R-USER-6,
//!   R-SHARE-2, R-SHARE-3, R-SHARE-5): the one definition the command side
//!   and the read side both use.
//! * [`boundary`]: a decision's consistency boundary (tags and types).
//! * [`site`]: sites and users (R-USER-*, R-ONB-*), and [`site::authorize`].
//! * [`connection`]: partner connections, share links and shared scorecards
//!   (R-CONN-*, R-SHARE-1, R-SHARE-7).
//! * [`content`]: scorecards, objects, relationships; what partners see
//!   (R-USER-3, R-USER-4, R-SHARE-2 to R-SHARE-6).
//! * [`lifecycle`]: renaming and archiving scorecards and objects, with
//!   the placements and relationships an archive removes.
//! * [`csv_import`]: parsing a users CSV (R-USER-8).
//! * [`error`]: [`DomainError`], with a stable code per variant.

pub mod access_rule;
pub mod boundary;
pub mod connection;
pub mod content;
pub mod csv_import;
pub mod decision;
pub mod error;
pub mod lifecycle;
pub mod site;

pub use decision::{Context, Decided, Decision, Facts, Read, Write};
pub use error::{DomainError, RowError};
/// The event catalog this crate decides over, re-exported so that callers and
/// tests name one path.
pub use shareledger_events::catalog;
pub use shareledger_events::envelope;
