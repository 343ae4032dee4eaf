//! The tags of the events stored before the log kept tags
//! (`sl_event_tags`, migration `20261207000001`): derived once, after the
//! migrations, with the catalog's [`tags_of`], in batches, each in one
//! transaction with its progress (`sl_event_tags_backfill`), so that an
//! interrupted run resumes and two processes migrating at once take turns.
//! Until every old event has its tags, the log refuses appends with a
//! condition (`LogError::TagsNotDerived`).

use sqlx::{PgPool, Row};

use crate::catalog::tags::tags_of;

/// Events whose tags are derived per transaction.
const BATCH: i64 = 5_000;

/// Derives the tags of every event stored before tags existed. Returns how
/// many events it tagged.
pub(crate) async fn derive_old_tags(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tagged = 0;
    loop {
        let mut tx = pool.begin().await?;
        let row = sqlx::query("SELECT until, done_to FROM sl_event_tags_backfill FOR UPDATE")
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(tagged);
        };
        let (until, done): (i64, i64) = (row.try_get("until")?, row.try_get("done_to")?);
        if done >= until {
            return Ok(tagged);
        }
        let events = sqlx::query(
            "SELECT global_position, stream_name, event_type, schema_version, data \
             FROM sl_events WHERE global_position > $1 AND global_position <= $2 \
             ORDER BY global_position LIMIT $3",
        )
        .bind(done)
        .bind(until)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let (mut tags, mut positions, mut types) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = until;
        for event in &events {
            let position: i64 = event.try_get("global_position")?;
            let event_type: String = event.try_get("event_type")?;
            let version: i32 = event.try_get("schema_version")?;
            let data: serde_json::Value = event.try_get("data")?;
            let stream: String = event.try_get("stream_name")?;
            for tag in tags_of(&stream, &event_type, version.max(0) as u32, &data) {
                tags.push(tag.to_string());
                positions.push(position);
                types.push(event_type.clone());
            }
            last = position;
        }
        if events.len() < BATCH as usize {
            last = until;
        }
        sqlx::query(
            "INSERT INTO sl_event_tags (tag, global_position, event_type) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&tags)
        .bind(&positions)
        .bind(&types)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sl_event_tags_backfill SET done_to = $1")
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tagged += events.len() as u64;
        tracing::info!(
            up_to = last,
            of = until,
            "derived the tags of stored events"
        );
    }
}
