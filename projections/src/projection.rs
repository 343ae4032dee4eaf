//! The contract of a read model kept in PostgreSQL tables.
//!
//! A [`SqlProjection`] owns a set of tables. It never chooses where they
//! live: the runtime ([`crate::runtime`]) gives it a schema (one per
//! *generation* of the read model, so that a rebuild is built beside the
//! live tables and then switched to) and a connection inside the
//! transaction that also moves the projection's checkpoint. Whatever
//! `apply` writes therefore commits exactly when the checkpoint does.
//!
//! SQL consumers read the live generation through the views of schema
//! [`LIVE_SCHEMA`] (`rm.<table>`), which the runtime points at the live
//! generation's tables.

use async_trait::async_trait;
use shareledger_events::RecordedEvent;
use sqlx::PgConnection;

use crate::ProjectionError;

/// The schema whose views show every projection's live tables.
pub const LIVE_SCHEMA: &str = "rm";

/// A read model kept in PostgreSQL tables.
#[async_trait]
pub trait SqlProjection: Send + Sync + 'static {
    /// A stable name: lowercase letters, digits and `_`. It names the
    /// checkpoint and the generation schemas (`rm_<name>_g<N>`).
    fn name(&self) -> &'static str;

    /// The version of the tables' shape and meaning. When the code's version
    /// differs from the live generation's, the runtime rebuilds the
    /// projection beside the live tables and switches when caught up.
    fn version(&self) -> u32;

    /// Creates the projection's (empty) tables and indexes in `schema`,
    /// which exists and is empty. Table names must be unique across all
    /// projections, since their live views share schema [`LIVE_SCHEMA`].
    async fn create_tables(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), ProjectionError>;

    /// Applies `events` (consecutive, in global order) to the tables in
    /// `schema`, inside the runtime's transaction. Must ignore events it has
    /// no use for and must not commit or roll back.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError>;
}
