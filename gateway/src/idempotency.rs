//! Idempotency keys as draft-ietf-httpapi-idempotency-key-header says,
//! across every process that serves one database.
//!
//! Each command's key (scoped to the token and the command,
//! `commands::scoped_key`) has a row in `sl_idempotency_keys` holding the
//! *fingerprint* of the first request sent with it (SHA-256 of the command
//! name and the body's canonical JSON), the claim of the request running
//! it, and its result once it succeeded. A send [`Idempotency::claim`]s the
//! key in one statement, and
//!
//! * runs the command if the key is new, or free again (its last run
//!   failed, or the process running it died and its lease lapsed);
//! * gets the first result back, replayed, if it succeeded;
//! * is refused if the body differs (422 `idempotency_key_reused`: the
//!   draft's answer for a key reused with another payload), or while
//!   another request runs the key (409 `idempotency_key_in_flight`, with
//!   `Retry-After`: the draft's answer for a retry that overtakes the
//!   original).
//!
//! So of any number of concurrent sends of one key, in one process or
//! many, exactly one runs, and the others get 409 or, once it finished, its
//! answer. A claim is a lease ([`LEASE`]) rather than a lock held on a
//! connection: a crashed process blocks its key for at most the lease, and
//! no connection is held while a command runs. Underneath, the command's
//! event ids still derive from the key, so even a run that outlives its
//! lease writes nothing twice.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use shareledger_events::store::supervise::{backoff, sqlx_is_transient};
use sqlx::PgPool;
use uuid::Uuid;

/// How long a claim holds without being finished or given back: a process
/// that died running a key blocks that key (409) this long at most.
/// Commands take milliseconds; the lease is generous so that a slow run is
/// not overtaken (and if one is, the log's idempotent appends still write
/// once).
pub const LEASE: Duration = Duration::from_secs(30);

/// SHA-256 of a request: the command's name and its body's canonical JSON.
pub type Fingerprint = [u8; 32];

/// The fingerprint of a command's body: SHA-256 over a version tag, the
/// command name and the body as canonical JSON (members sorted by name, no
/// whitespace), so that bodies that differ only in member order or spacing
/// are one request.
pub fn fingerprint(command: &str, body: &Value) -> Fingerprint {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    let mut hash = Sha256::new();
    hash.update(b"shareledger-idempotency-v1\0");
    hash.update(command.as_bytes());
    hash.update(b"\0");
    hash.update(canonical.as_bytes());
    hash.finalize().into()
}

/// JSON with members sorted by name, whatever order the map keeps.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(&Value::String(name.clone()), out);
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

/// What a send of a key may do.
#[derive(Debug)]
pub enum Claim {
    /// Run the command, then [`Idempotency::finish`] or
    /// [`Idempotency::release`] with this ticket.
    Run(Ticket),
    /// The key's first success: answer it again, marked replayed.
    Replay(Value),
    /// The key was sent with another body (or for another command).
    Reused,
    /// Another request runs the key now.
    InFlight,
}

/// The right to run a key, until [`LEASE`] after it was taken.
#[derive(Debug)]
pub struct Ticket {
    key: Uuid,
    claim: Uuid,
}

/// The keys' table, shared by every process on the database.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pool: PgPool,
    lease: Duration,
}

impl Idempotency {
    /// The keys' table on the database of `pool`, through a pool of its
    /// own (at most half as many connections) whose transactions commit
    /// asynchronously: a key's row costs no WAL flush of its own. That
    /// loses nothing a caller was told: a claim is flushed by the
    /// command's own append, which commits synchronously after it; a
    /// result or a give-back lost in a crash leaves the key claimed until
    /// its lease lapses, and the retry after that finds the first result
    /// in the log (the command's event ids derive from the key).
    pub fn new(pool: PgPool) -> Self {
        let options = (*pool.connect_options())
            .clone()
            .options([("synchronous_commit", "off")]);
        let main = pool.options();
        let keys = shareledger_events::store::PgEventStore::pool_options()
            .max_connections(main.get_max_connections().div_ceil(2).max(2))
            .acquire_timeout(main.get_acquire_timeout())
            .connect_lazy_with(options);
        Self {
            pool: keys,
            lease: LEASE,
        }
    }

    /// Claims `key` for a request with this fingerprint, or says why not.
    pub async fn claim(
        &self,
        key: Uuid,
        command: &str,
        fingerprint: &Fingerprint,
    ) -> Result<Claim, sqlx::Error> {
        // A key given back between the claim and the look that follows it
        // is claimed again (a few rounds: each is one statement).
        for _ in 0..3 {
            let claim = Uuid::new_v4();
            let claimed: Option<Uuid> = sqlx::query_scalar(
                "INSERT INTO sl_idempotency_keys AS k \
                     (scoped_key, command, fingerprint, claim, lease_until) \
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
                 ON CONFLICT (scoped_key) DO UPDATE \
                     SET claim = EXCLUDED.claim, lease_until = EXCLUDED.lease_until \
                     WHERE k.result IS NULL AND k.fingerprint = EXCLUDED.fingerprint \
                       AND (k.claim IS NULL OR k.lease_until <= now()) \
                 RETURNING k.claim",
            )
            .bind(key)
            .bind(command)
            .bind(&fingerprint[..])
            .bind(claim)
            .bind(self.lease.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
            if claimed == Some(claim) {
                return Ok(Claim::Run(Ticket { key, claim }));
            }
            let row: Option<(Vec<u8>, Option<Value>, bool)> = sqlx::query_as(
                "SELECT fingerprint, result, claim IS NOT NULL AND lease_until > now() \
                 FROM sl_idempotency_keys WHERE scoped_key = $1",
            )
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            match row {
                Some((stored, _, _)) if stored[..] != fingerprint[..] => return Ok(Claim::Reused),
                Some((_, Some(result), _)) => return Ok(Claim::Replay(result)),
                Some((_, None, true)) => return Ok(Claim::InFlight),
                // Given back (or its lease lapsed) since: claim it again.
                _ => continue,
            }
        }
        Ok(Claim::InFlight)
    }

    /// Records the success of a claimed run: later sends get `result`
    /// back. False when the claim was lost (its lease lapsed and another
    /// request took the key over): that request records its own.
    pub async fn finish(&self, ticket: &Ticket, result: &Value) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE sl_idempotency_keys \
             SET result = $3, claim = NULL, lease_until = NULL, finished_at = now() \
             WHERE scoped_key = $1 AND claim = $2",
        )
        .bind(ticket.key)
        .bind(ticket.claim)
        .bind(result)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the key back after a failed run, as [`Idempotency::release`]
    /// does (before returning, when the database answers); when it is away
    /// (which is often why the run failed), keeps trying in the background
    /// until it is back or the lease has lapsed anyway, so that a retry
    /// after an outage runs at once instead of meeting 409 until the lease
    /// lapses. When the run itself failed because the database is away
    /// (`database_away`), the first try is made in the background too: the
    /// caller is not kept waiting for a database known to be gone.
    pub async fn release_eventually(&self, ticket: Ticket, database_away: bool) {
        let keys = self.clone();
        let ticket = std::sync::Arc::new(ticket);
        self.eventually(database_away, "giving back an idempotency key", move || {
            let (keys, ticket) = (keys.clone(), ticket.clone());
            async move { keys.release(&ticket).await.map(|()| true) }
        })
        .await;
    }

    /// Records a success as [`Idempotency::finish`] does (before returning,
    /// when the database answers); when it is away, keeps trying in the
    /// background until the lease lapses (a retry meanwhile gets 409, and
    /// after the lease it replays from the log, where the command's events
    /// are).
    pub async fn finish_eventually(&self, ticket: Ticket, result: Value) {
        let keys = self.clone();
        let (ticket, result) = (std::sync::Arc::new(ticket), std::sync::Arc::new(result));
        self.eventually(
            false,
            "recording a command's result for its idempotency key",
            move || {
                let (keys, ticket, result) = (keys.clone(), ticket.clone(), result.clone());
                async move { keys.finish(&ticket, &result).await }
            },
        )
        .await;
    }

    /// Runs `write` now (unless `later`), and again in the background while
    /// it fails because the database is away, until the lease lapses. An
    /// answer of `false` means the claim was lost to a takeover (logged).
    async fn eventually<F, Fut>(&self, later: bool, what: &'static str, write: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<bool, sqlx::Error>> + Send,
    {
        let settled = move |outcome: Result<bool, sqlx::Error>| match outcome {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(what, "an idempotency key's lease lapsed while its command ran; the request that took it over records its own");
                true
            }
            Err(e) if sqlx_is_transient(&e) => false,
            Err(e) => {
                tracing::error!(what, error = %e, "the key frees itself when its lease lapses");
                true
            }
        };
        if !later && settled(write().await) {
            return;
        }
        let until = tokio::time::Instant::now() + self.lease;
        tokio::spawn(async move {
            let mut delays = backoff();
            loop {
                let delay = delays.next().unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(delay).await;
                if settled(write().await) || tokio::time::Instant::now() >= until {
                    return;
                }
            }
        });
    }

    /// Gives a claimed key back after a failed run (nothing was written):
    /// the same request may be sent again. The fingerprint stays.
    pub async fn release(&self, ticket: &Ticket) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE sl_idempotency_keys SET claim = NULL, lease_until = NULL \
             WHERE scoped_key = $1 AND claim = $2",
        )
        .bind(ticket.key)
        .bind(ticket.claim)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fingerprints_ignore_member_order_and_spacing_but_not_values_or_commands() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "\u00e9"}], "a": null}"#)
            .expect("JSON");
        let b: Value = serde_json::from_str(r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#).expect("JSON");
        assert_eq!(
            fingerprint("SetSeatLimit", &a),
            fingerprint("SetSeatLimit", &b)
        );
        assert_ne!(
            fingerprint("SetSeatLimit", &a),
            fingerprint("SetParentSite", &a)
        );
        assert_ne!(
            fingerprint("SetSeatLimit", &json!({"seat_limit": 7})),
            fingerprint("SetSeatLimit", &json!({"seat_limit": 9}))
        );
        let mut canonical = String::new();
        write_canonical(&b, &mut canonical);
        assert_eq!(canonical, r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#);
    }
}
