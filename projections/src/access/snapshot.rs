//! Snapshots of the access index: a new process starts from the newest
//! snapshot the integrity chain vouches for and reads the log only after
//! it, instead of replaying the whole log.
//!
//! * **Written** by one process at a time (the lease `index_snapshot`, see
//!   the service's start): every [`SnapshotOptions::every`] events the
//!   index has applied, a copy of the index is encoded (MessagePack,
//!   `rmp-serde`, in pieces encoded in parallel: see [`encode`]) off the
//!   async threads and stored in
//!   `sl_index_snapshots`, one row per [`FORMAT`], with the integrity
//!   chain's hash at the snapshot's position. Only a position the sealer
//!   has sealed is written (the chain must vouch for it).
//! * **Loaded** at start: the row of this code's [`FORMAT`] is used only if
//!   the chain's seal at its position still carries the same hash (a
//!   snapshot of another log, or of one restored differently since, is
//!   never used) and it decodes to an index at that position. Anything
//!   else (no row, another hash, a row that does not decode) is logged and
//!   the index is built from the whole log, as without snapshots.
//!
//! What the check does not do: re-hash the events up to the position (that
//! is `shareledger verify`, a scan of the whole log). A snapshot is as
//! trustworthy as the sealed chain it names.

use std::time::Duration;

use shareledger_events::store::PgEventStore;
use sqlx::Row;

use super::index::Piece;
use super::AccessIndex;
use crate::ProjectionError;

/// The shape of [`AccessIndex`] a snapshot holds. Change it whenever the
/// index's fields change: processes then ignore older snapshots (and
/// replay) until a process of the new version writes one.
pub const FORMAT: i32 = 2;

/// When snapshots are written.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotOptions {
    /// Write a snapshot once the index has applied this many events since
    /// the last one (or since the start, with none).
    pub every: u64,
    /// How often the writer looks at the index's position.
    pub poll: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            every: 100_000,
            poll: Duration::from_secs(5),
        }
    }
}

/// How many chunks each of the index's collections is cut into: enough
/// pieces for every core to take some while the others decode theirs.
const CHUNKS: usize = 16;

/// The bytes of a snapshot of `index`: a MessagePack list of byte strings,
/// each the MessagePack of one piece of the index (`index/pieces.rs`),
/// encoded in parallel.
pub fn encode(index: AccessIndex) -> Result<Vec<u8>, ProjectionError> {
    use rayon::prelude::*;
    let failed = |e: rmp_serde::encode::Error| ProjectionError::Snapshot(format!("encoding: {e}"));
    let pieces: Vec<serde_bytes::ByteBuf> = index
        .into_pieces(CHUNKS)
        .into_par_iter()
        .map(|piece| rmp_serde::to_vec(&piece).map(serde_bytes::ByteBuf::from))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    rmp_serde::to_vec(&pieces).map_err(failed)
}

/// The index a snapshot's bytes hold, its pieces decoded in parallel.
pub fn decode(bytes: &[u8]) -> Result<AccessIndex, ProjectionError> {
    use rayon::prelude::*;
    let failed = |e: rmp_serde::decode::Error| ProjectionError::Snapshot(format!("decoding: {e}"));
    let pieces: Vec<&serde_bytes::Bytes> = rmp_serde::from_slice(bytes).map_err(failed)?;
    let pieces: Vec<Piece> = pieces
        .into_par_iter()
        .map(|piece| rmp_serde::from_slice(piece))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    AccessIndex::from_pieces(pieces)
        .map_err(|e| ProjectionError::Snapshot(format!("decoding: {e}")))
}

/// The snapshot stored now: its position (0 with none).
pub async fn stored_position(store: &PgEventStore) -> Result<u64, ProjectionError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM sl_index_snapshots WHERE format = $1")
            .bind(FORMAT)
            .fetch_optional(store.pool())
            .await?;
    Ok(position.map_or(0, |p| p as u64))
}

/// The chain's hash at `position`, if the sealer has sealed it.
async fn seal_at(store: &PgEventStore, position: u64) -> Result<Option<Vec<u8>>, ProjectionError> {
    Ok(
        sqlx::query_scalar("SELECT chain_hash FROM sl_seals WHERE global_position = $1")
            .bind(position as i64)
            .fetch_optional(store.pool())
            .await?,
    )
}

/// Stores `index` as the snapshot of its position, unless that position is
/// not sealed yet or a snapshot as far or further is stored. Returns the
/// position stored, if any.
pub async fn save(
    store: &PgEventStore,
    index: AccessIndex,
) -> Result<Option<u64>, ProjectionError> {
    let position = index.position();
    if position == 0 {
        return Ok(None);
    }
    let Some(chain_hash) = seal_at(store, position).await? else {
        return Ok(None);
    };
    let data = tokio::task::spawn_blocking(move || encode(index))
        .await
        .map_err(|e| ProjectionError::Snapshot(format!("encoding stopped: {e}")))??;
    let written = sqlx::query(
        "INSERT INTO sl_index_snapshots (format, position, chain_hash, data) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (format) DO UPDATE SET position = EXCLUDED.position, \
             chain_hash = EXCLUDED.chain_hash, data = EXCLUDED.data, written_at = now() \
         WHERE sl_index_snapshots.position < EXCLUDED.position",
    )
    .bind(FORMAT)
    .bind(position as i64)
    .bind(chain_hash)
    .bind(&data)
    .execute(store.pool())
    .await?;
    tracing::info!(position, bytes = data.len(), "index snapshot written");
    Ok((written.rows_affected() == 1).then_some(position))
}

/// The stored snapshot of this [`FORMAT`], if the chain vouches for it and
/// it decodes; `None` (logged) otherwise.
pub async fn load(store: &PgEventStore) -> Result<Option<AccessIndex>, ProjectionError> {
    let started = std::time::Instant::now();
    let row =
        sqlx::query("SELECT position, chain_hash, data FROM sl_index_snapshots WHERE format = $1")
            .bind(FORMAT)
            .fetch_optional(store.pool())
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let position = row.try_get::<i64, _>("position")? as u64;
    let chain_hash: Vec<u8> = row.try_get("chain_hash")?;
    if seal_at(store, position).await?.as_deref() != Some(chain_hash.as_slice()) {
        tracing::warn!(
            position,
            "the index snapshot does not match the integrity chain at its position: not used"
        );
        return Ok(None);
    }
    let data: Vec<u8> = row.try_get("data")?;
    let data_len = data.len();
    let fetched = started.elapsed();
    let decoded = tokio::task::spawn_blocking(move || decode(&data))
        .await
        .map_err(|e| ProjectionError::Snapshot(format!("decoding stopped: {e}")))?;
    match decoded {
        Ok(index) if index.position() == position => {
            tracing::info!(
                position,
                bytes = data_len,
                fetch_ms = fetched.as_millis() as u64,
                decode_ms = (started.elapsed() - fetched).as_millis() as u64,
                "index snapshot loaded"
            );
            Ok(Some(index))
        }
        Ok(index) => {
            tracing::warn!(
                position,
                holds = index.position(),
                "the index snapshot holds another position than its row says: not used"
            );
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(position, error = %e, "the index snapshot does not decode: not used");
            Ok(None)
        }
    }
}

/// Writes a snapshot of `live` whenever it has applied
/// [`SnapshotOptions::every`] events since the stored one, until an error
/// (run it under the `index_snapshot` lease, supervised). `health`'s
/// position is the stored snapshot's.
pub async fn keep_writing(
    store: &PgEventStore,
    live: &super::LiveAccess,
    health: &shareledger_events::store::supervise::PartHealth,
    options: SnapshotOptions,
) -> Result<(), ProjectionError> {
    let mut stored = stored_position(store).await?;
    loop {
        health.advanced(stored);
        if live.position() >= stored.saturating_add(options.every.max(1)) {
            // `None`: not sealed that far yet; tried again at the next poll.
            if let Some(position) = save(store, live.copy()).await? {
                stored = position;
                health.advanced(stored);
            }
        }
        tokio::time::sleep(options.poll).await;
    }
}
