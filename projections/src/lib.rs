//! Read models built from the event log. Each projection will consume the log
//! through `shareledger_events::store::PgEventStore::subscribe_to_all` from
//! its checkpoint. None exists yet: they arrive with the access-model issue.
