//! Reads for looking back: the events of a few streams up to a past global
//! position (exactly what a replay of the log up to that position applied
//! for those streams, deleted streams included, as `$all` is), the streams
//! whose names match a pattern, and the position a past time maps to.

use chrono::{DateTime, Utc};

use super::{recorded_event, LogError, PgEventStore, EVENT_COLUMNS};
use crate::{RecordedEvent, StreamName};

impl PgEventStore {
    /// Every event of `streams` at or below global position `until`, and
    /// the events of `partial` streams whose type is one of `types`, in
    /// global order, including events of soft-deleted streams.
    pub async fn read_streams_until(
        &self,
        streams: &[StreamName],
        partial: &[StreamName],
        types: &[&str],
        until: u64,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let names: Vec<&str> = streams.iter().map(StreamName::as_str).collect();
        let partial: Vec<&str> = partial.iter().map(StreamName::as_str).collect();
        // Stream by stream through the (stream_name, stream_revision) index:
        // a plan that walks the global order and filters would read the
        // whole prefix of the log.
        let sql = format!(
            "SELECT e.* FROM unnest($1::text[]) AS s(name) CROSS JOIN LATERAL ( \
                 SELECT {EVENT_COLUMNS} FROM sl_events \
                 WHERE stream_name = s.name AND global_position <= $2 \
                 ORDER BY stream_revision) e \
             UNION ALL \
             SELECT e.* FROM unnest($3::text[]) AS s(name) CROSS JOIN LATERAL ( \
                 SELECT {EVENT_COLUMNS} FROM sl_events \
                 WHERE stream_name = s.name AND global_position <= $2 \
                   AND event_type = ANY($4) \
                 ORDER BY stream_revision) e \
             ORDER BY global_position"
        );
        let query = sqlx::query(&sql)
            .bind(names)
            .bind(i64::try_from(until).unwrap_or(i64::MAX))
            .bind(partial)
            .bind(types);
        // A big site's streams are tens of thousands of rows: let the merge
        // sort them in memory rather than spill to disk (this statement only).
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        use futures::TryStreamExt;
        let mut rows = query.fetch(&mut *tx);
        let mut events = Vec::with_capacity(1024);
        while let Some(row) = rows.try_next().await? {
            events.push(recorded_event(&row)?);
        }
        drop(rows);
        tx.commit().await?;
        Ok(events)
    }

    /// The names of the streams that start with `prefix` and contain
    /// `contains` (e.g. every `connection-` stream of one site).
    pub async fn stream_names(
        &self,
        prefix: &str,
        contains: &str,
    ) -> Result<Vec<String>, LogError> {
        let escape = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT stream_name FROM sl_streams \
             WHERE stream_name LIKE $1 AND strpos(stream_name, $2) > 0 ORDER BY stream_name",
        )
        .bind(format!("{}%", escape(prefix)))
        .bind(contains)
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }

    /// The last global position recorded at or before `time` (0 when none
    /// is). Found by binary search over the global order, which
    /// `recorded_at` follows: it is the appending transaction's start, and
    /// appends commit in global order, so only events appended concurrently
    /// within one transaction's duration can be out of order by time.
    pub async fn position_at(&self, time: DateTime<Utc>) -> Result<u64, LogError> {
        let head = self.head_position().await?;
        let (mut lo, mut hi) = (0u64, head);
        // Invariant: recorded_at(lo) <= time (or lo = 0); every p > hi is after time.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let at: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT recorded_at FROM sl_events WHERE global_position = $1")
                    .bind(mid as i64)
                    .fetch_optional(&self.pool)
                    .await?;
            match at {
                Some(at) if at <= time => lo = mid,
                _ => hi = mid - 1,
            }
        }
        Ok(lo)
    }
}
