-- Dynamic consistency boundaries (docs/event-store.md, events/src/dcb.rs):
-- every event's tags, and append conditions checked with the append.
--
-- * sl_event_tags: one row per (tag, event), with the event's type, so that
--   "an event tagged T, of type Y, after position P" is one index range
--   scan. Written by sl_append and sl_append_batch with the events, in the
--   same transaction; append-only like sl_events.
-- * Events stored before this migration get their tags from the Rust side
--   (`PgEventStore::migrate` derives them with the catalog's `tags_of`):
--   sl_event_tags_backfill says up to where that is done. Until it is, an
--   append with a condition is refused (SL010): a condition must not miss
--   an old event because its tags are not there yet.
-- * sl_append and sl_append_batch take each event's tags and an optional
--   condition: rows (tag, type or NULL for any type, after), meaning "no
--   event tagged `tag` (of `type`) after position `after`". The condition is
--   checked after the head of the log is taken (so no other append commits
--   meanwhile) and after the idempotent-retry check (a re-sent append finds
--   its own events, whatever its condition says). A failed condition writes
--   nothing: SL009, DETAIL {"tag", "event_type", "position"} of the first
--   conflicting event. In a batch, an append's condition also sees the
--   events of the appends decided before it in the same batch.
--
-- sl_append also answers, per event, whether it was written before
-- (`replayed`: the append was a retry), so that a caller that appended
-- without an expected revision still knows.
--
-- New arguments (appended to the old ones; the old signatures are dropped,
-- so a process of the previous version cannot write untagged events):
--   p_tag_event  integer[]  the event (1-based, in p_event_ids) of each tag
--   p_tags       text[]     the tags
--   p_cond_tags  text[]     condition rows: tag
--   p_cond_types text[]     condition rows: event type, NULL for any
--   p_cond_after bigint[]   condition rows: after this position
--   p_cond_append integer[] (sl_append_batch only) the append of each row

CREATE TABLE sl_event_tags (
    tag             text   NOT NULL CHECK (length(tag) BETWEEN 3 AND 200),
    global_position bigint NOT NULL,
    event_type      text   NOT NULL,
    PRIMARY KEY (tag, global_position)
);

CREATE FUNCTION sl_event_tags_reject_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'sl_event_tags is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'SL900';
END;
$fn$;
CREATE TRIGGER sl_event_tags_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON sl_event_tags
    FOR EACH STATEMENT EXECUTE FUNCTION sl_event_tags_reject_change();

CREATE TABLE sl_event_tags_backfill (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- the last position stored before tags were written with events
    until     bigint  NOT NULL,
    -- the last position whose tags have been derived
    done_to   bigint  NOT NULL
);
INSERT INTO sl_event_tags_backfill (until, done_to)
    SELECT coalesce(max(global_position), 0), 0 FROM sl_events;

-- Raises SL006 when the tag and condition arrays do not fit the events and
-- appends; SL010 when a condition is given before old events have tags.
CREATE FUNCTION sl_append_check_dcb(
    p_events      integer,
    p_appends     integer,
    p_tag_event   integer[],
    p_tags        text[],
    p_cond_append integer[],
    p_cond_tags   text[],
    p_cond_types  text[],
    p_cond_after  bigint[]
) RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_reason text;
BEGIN
    v_reason := CASE
        WHEN p_tag_event IS NULL THEN 'p_tag_event is NULL'
        WHEN p_tags IS NULL THEN 'p_tags is NULL'
        WHEN p_cond_tags IS NULL THEN 'p_cond_tags is NULL'
        WHEN p_cond_types IS NULL THEN 'p_cond_types is NULL'
        WHEN p_cond_after IS NULL THEN 'p_cond_after is NULL'
        WHEN cardinality(p_tag_event) <> cardinality(p_tags) THEN
            format('the tag arrays differ in length: %s event number(s), %s tag(s)',
                   cardinality(p_tag_event), cardinality(p_tags))
        WHEN cardinality(p_cond_types) <> cardinality(p_cond_tags)
             OR cardinality(p_cond_after) <> cardinality(p_cond_tags)
             OR (p_cond_append IS NOT NULL AND cardinality(p_cond_append) <> cardinality(p_cond_tags)) THEN
            format('the condition arrays differ in length: %s tag(s), %s type(s), %s position(s)',
                   cardinality(p_cond_tags), cardinality(p_cond_types), cardinality(p_cond_after))
        WHEN array_position(p_tag_event, NULL) IS NOT NULL THEN 'p_tag_event has a NULL element'
        WHEN array_position(p_tags, NULL) IS NOT NULL THEN 'p_tags has a NULL element'
        WHEN array_position(p_cond_tags, NULL) IS NOT NULL THEN 'p_cond_tags has a NULL element'
        WHEN array_position(p_cond_after, NULL) IS NOT NULL THEN 'p_cond_after has a NULL element'
        WHEN p_cond_append IS NOT NULL AND array_position(p_cond_append, NULL) IS NOT NULL THEN
            'p_cond_append has a NULL element'
        WHEN EXISTS (SELECT 1 FROM unnest(p_tag_event) AS e WHERE e < 1 OR e > p_events) THEN
            'p_tag_event names an event that is not in the append'
        WHEN EXISTS (SELECT 1 FROM unnest(p_cond_after) AS a WHERE a < 0) THEN
            'p_cond_after has a negative position'
        WHEN p_cond_append IS NOT NULL
             AND EXISTS (SELECT 1 FROM unnest(p_cond_append) AS a WHERE a < 1 OR a > p_appends) THEN
            'p_cond_append names an append that is not in the batch'
    END;
    IF v_reason IS NOT NULL THEN
        RAISE EXCEPTION 'these arrays do not describe an append: %', v_reason
            USING ERRCODE = 'SL006', DETAIL = json_build_object('reason', v_reason)::text;
    END IF;
    IF cardinality(p_cond_tags) > 0
       AND EXISTS (SELECT 1 FROM sl_event_tags_backfill WHERE done_to < until) THEN
        RAISE EXCEPTION 'the tags of events stored before tags existed are not derived yet'
            USING ERRCODE = 'SL010', DETAIL = '{}';
    END IF;
END;
$fn$;

-- The first committed event matching a condition (rows of tag, type or
-- NULL, after), if any, with the first of its tags (in text order) that
-- matched.
CREATE FUNCTION sl_condition_conflict(
    p_cond_tags  text[],
    p_cond_types text[],
    p_cond_after bigint[]
) RETURNS TABLE (tag text, event_type text, global_position bigint)
LANGUAGE sql STABLE
AS $fn$
    SELECT c.tag, f.event_type, f.global_position
    FROM unnest(p_cond_tags, p_cond_types, p_cond_after) AS c(tag, type, after)
    CROSS JOIN LATERAL (
        SELECT t.event_type, t.global_position FROM sl_event_tags t
        WHERE t.tag = c.tag AND t.global_position > c.after
          AND (c.type IS NULL OR t.event_type = c.type)
        ORDER BY t.global_position LIMIT 1
    ) AS f
    ORDER BY f.global_position, c.tag
    LIMIT 1
$fn$;

DROP FUNCTION sl_append(text[], bigint[], integer[], integer[], uuid[], text[], integer[],
                        jsonb[], jsonb[]);
DROP FUNCTION sl_append_batch(integer[], text[], bigint[], integer[], integer[], uuid[], text[],
                              integer[], jsonb[], jsonb[]);

-- sl_append as in migration 20261206000001, with tags and a condition.
CREATE FUNCTION sl_append(
    p_streams    text[],
    p_expected   bigint[],
    p_counts     integer[],
    p_event_part integer[],
    p_event_ids  uuid[],
    p_types      text[],
    p_versions   integer[],
    p_data       jsonb[],
    p_metadata   jsonb[],
    p_tag_event  integer[],
    p_tags       text[],
    p_cond_tags  text[],
    p_cond_types text[],
    p_cond_after bigint[]
) RETURNS TABLE (event_id uuid, stream_name text, stream_revision bigint, global_position bigint,
               replayed boolean)
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_parts     integer;
    v_n         integer;
    v_row       record;
    v_k         integer;
    v_old       bigint[];
    v_visible   bigint[];
    v_tomb      boolean[];
    v_start     integer[];
    v_state     bigint;
    v_first_pos bigint;
    v_conflict  record;
BEGIN
    -- 0. The arrays describe one append (SL006, SL007, SL008, SL010).
    PERFORM sl_append_check(NULL, p_streams, p_expected, p_counts, p_event_part, p_event_ids,
                            p_types, p_versions, p_data, p_metadata, false);
    PERFORM sl_append_check_dcb(cardinality(p_event_ids), 1, p_tag_event, p_tags, NULL,
                                p_cond_tags, p_cond_types, p_cond_after);
    v_parts := cardinality(p_streams);
    v_n := cardinality(p_event_ids);
    v_old := array_fill(NULL::bigint, ARRAY[v_parts]);
    v_visible := array_fill(NULL::bigint, ARRAY[v_parts]);
    v_tomb := array_fill(NULL::boolean, ARRAY[v_parts]);
    v_start := array_fill(NULL::integer, ARRAY[v_parts]);

    -- 1. Take the head of the log first and hold it to commit.
    UPDATE sl_log_head SET last_position = last_position + v_n WHERE singleton
        RETURNING last_position - v_n + 1 INTO v_first_pos;

    -- 2. A retry of an append that was written already writes nothing.
    IF EXISTS (SELECT 1 FROM sl_events e WHERE e.event_id = ANY (p_event_ids)) THEN
        UPDATE sl_log_head SET last_position = last_position - v_n WHERE singleton;
        RETURN QUERY SELECT r.event_id, r.stream_name, r.stream_revision, r.global_position, true
                     FROM sl_append_retry(p_streams, p_event_part, p_event_ids) AS r;
        RETURN;
    END IF;

    -- 2b. The condition: no matching event after its positions. Holding the
    --     head, every append that could match has committed or waits.
    IF cardinality(p_cond_tags) > 0 THEN
        SELECT * INTO v_conflict FROM sl_condition_conflict(p_cond_tags, p_cond_types, p_cond_after);
        IF FOUND THEN
            RAISE EXCEPTION 'the append condition failed: event % (%) is tagged %',
                    v_conflict.global_position, v_conflict.event_type, v_conflict.tag
                USING ERRCODE = 'SL009', DETAIL = json_build_object(
                    'tag', v_conflict.tag, 'event_type', v_conflict.event_type,
                    'position', v_conflict.global_position)::text;
        END IF;
    END IF;

    -- 3. Lock and advance every stream in one statement, in name order.
    FOR v_row IN
        INSERT INTO sl_streams AS s (stream_name, last_revision)
            SELECT t.name, t.n - 1
            FROM unnest(p_streams, p_counts) AS t(name, n)
            ORDER BY t.name
        ON CONFLICT (stream_name) DO UPDATE
            SET last_revision = s.last_revision + EXCLUDED.last_revision + 1
        RETURNING s.stream_name, s.last_revision, s.visible_from, s.tombstoned
    LOOP
        v_k := array_position(p_streams, v_row.stream_name);
        v_old[v_k] := v_row.last_revision - p_counts[v_k];
        v_visible[v_k] := v_row.visible_from;
        v_tomb[v_k] := v_row.tombstoned;
    END LOOP;

    -- 4. Check tombstones and expectations, stream by stream in name order.
    FOR v_k IN
        SELECT u.ord FROM unnest(p_streams) WITH ORDINALITY AS u(name, ord) ORDER BY u.name
    LOOP
        v_state := CASE WHEN v_old[v_k] < v_visible[v_k] THEN -1 ELSE v_old[v_k] END;
        IF v_tomb[v_k] OR NOT sl_expectation_met(p_expected[v_k], v_state) THEN
            IF v_tomb[v_k] THEN
                RAISE EXCEPTION 'stream % is tombstoned', p_streams[v_k]
                    USING ERRCODE = 'SL002', DETAIL = json_build_object('stream', p_streams[v_k])::text;
            END IF;
            RAISE EXCEPTION 'wrong expected revision on stream %', p_streams[v_k]
                USING ERRCODE = 'SL001', DETAIL = json_build_object(
                    'stream', p_streams[v_k], 'expected', p_expected[v_k], 'actual', v_state)::text;
        END IF;
    END LOOP;

    -- The first event of each part.
    v_start[1] := 1;
    FOR v_k IN 2 .. v_parts LOOP
        v_start[v_k] := v_start[v_k - 1] + p_counts[v_k - 1];
    END LOOP;

    -- 5. Write the events at the positions taken in step 1, and their tags.
    INSERT INTO sl_event_tags (tag, global_position, event_type)
        SELECT t.tag, v_first_pos + t.e - 1, p_types[t.e]
        FROM unnest(p_tag_event, p_tags) AS t(e, tag);
    RETURN QUERY
        INSERT INTO sl_events AS e (global_position, stream_name, stream_revision, event_id,
                                    event_type, schema_version, data, metadata)
        SELECT v_first_pos + u.ord - 1,
               p_streams[u.part],
               v_old[u.part] + (u.ord - v_start[u.part]) + 1,
               u.id, u.t, u.v, u.d, u.m
        FROM unnest(p_event_part, p_event_ids, p_types, p_versions, p_data, p_metadata)
             WITH ORDINALITY AS u(part, id, t, v, d, m, ord)
        RETURNING e.event_id, e.stream_name, e.stream_revision, e.global_position, false;

    PERFORM pg_notify('sl_log', (v_first_pos + v_n - 1)::text);
END;
$fn$;

-- sl_append_batch as in migration 20261206000001, with tags and a
-- condition per append.
CREATE FUNCTION sl_append_batch(
    p_part_append integer[],
    p_streams     text[],
    p_expected    bigint[],
    p_counts      integer[],
    p_event_part  integer[],
    p_event_ids   uuid[],
    p_types       text[],
    p_versions    integer[],
    p_data        jsonb[],
    p_metadata    jsonb[],
    p_tag_event   integer[],
    p_tags        text[],
    p_cond_append integer[],
    p_cond_tags   text[],
    p_cond_types  text[],
    p_cond_after  bigint[]
) RETURNS TABLE (batch_append integer, written_id uuid, written_revision bigint,
                 written_position bigint, failure_code text, failure_detail text)
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_parts    integer;
    v_appends  integer;
    v_head     bigint;
    v_written  integer := 0;
    v_names    text[];
    v_rev      bigint[];
    v_visible  bigint[];
    v_tomb     boolean[];
    v_dirty    boolean[];
    v_slot     integer[];
    v_start    integer[];
    v_old      bigint[];
    v_pos      bigint[];
    v_rev_of   bigint[];
    v_taken    uuid[];
    v_a        integer;
    v_k        integer;
    v_i        integer;
    v_j        integer;
    v_first    integer := 1;
    v_last     integer;
    v_lo       integer;
    v_hi       integer;
    v_state    bigint;
    v_failed   boolean;
    v_fail     integer;
    -- Tags of the events written so far in this batch (for conditions).
    v_btags    text[] := '{}';
    v_btypes   text[] := '{}';
    v_bpos     bigint[] := '{}';
    v_ctag     text;
    v_ctype    text;
    v_cpos     bigint;
    v_ctags    text[];
    v_ctypes   text[];
    v_cafter   bigint[];
BEGIN
    -- 0. The arrays describe appends (SL006, SL007, SL008, SL010).
    PERFORM sl_append_check(p_part_append, p_streams, p_expected, p_counts, p_event_part,
                            p_event_ids, p_types, p_versions, p_data, p_metadata, true);
    v_appends := coalesce(p_part_append[cardinality(p_part_append)], 0);
    PERFORM sl_append_check_dcb(cardinality(p_event_ids), v_appends, p_tag_event, p_tags,
                                p_cond_append, p_cond_tags, p_cond_types, p_cond_after);
    v_parts := cardinality(p_streams);
    v_start := array_fill(NULL::integer, ARRAY[v_parts]);
    v_old := array_fill(NULL::bigint, ARRAY[v_parts]);
    v_pos := array_fill(NULL::bigint, ARRAY[cardinality(p_event_ids)]);
    v_rev_of := array_fill(NULL::bigint, ARRAY[cardinality(p_event_ids)]);

    -- 1. Take the head of the log first and hold it to commit.
    UPDATE sl_log_head h SET last_position = h.last_position + cardinality(p_event_ids)
        WHERE h.singleton
        RETURNING h.last_position - cardinality(p_event_ids) INTO v_head;

    -- 2. The event ids already written, the streams and their state, each
    --    part's slot (see migration 20261124000006).
    WITH u AS (
        SELECT t.name, t.ord, dense_rank() OVER (ORDER BY t.name)::integer AS slot
        FROM unnest(p_streams) WITH ORDINALITY AS t(name, ord)
    ), n AS (
        SELECT DISTINCT ON (u.slot) u.slot, u.name FROM u ORDER BY u.slot
    ), st AS (
        SELECT n.slot, n.name, s.last_revision, s.visible_from, s.tombstoned
        FROM n LEFT JOIN sl_streams s ON s.stream_name = n.name
    )
    SELECT (SELECT coalesce(array_agg(e.event_id), '{}')
            FROM sl_events e WHERE e.event_id = ANY (p_event_ids)),
           (SELECT array_agg(u.slot ORDER BY u.ord) FROM u),
           array_agg(st.name ORDER BY st.slot),
           array_agg(coalesce(st.last_revision, -1) ORDER BY st.slot),
           array_agg(coalesce(st.visible_from, 0) ORDER BY st.slot),
           array_agg(coalesce(st.tombstoned, false) ORDER BY st.slot)
      INTO v_taken, v_slot, v_names, v_rev, v_visible, v_tomb
    FROM st;
    v_dirty := array_fill(false, ARRAY[cardinality(v_names)]);

    -- 3. Each part's first event.
    v_i := 1;
    FOR v_k IN 1 .. v_parts LOOP
        v_start[v_k] := v_i;
        v_i := v_i + p_counts[v_k];
    END LOOP;

    -- 4. Decide the appends in order.
    FOR v_a IN 1 .. v_appends LOOP
        v_last := v_first;
        WHILE v_last < v_parts AND p_part_append[v_last + 1] = v_a LOOP
            v_last := v_last + 1;
        END LOOP;
        v_lo := v_start[v_first];
        v_hi := v_start[v_last] + p_counts[v_last] - 1;
        v_failed := false;
        IF v_hi >= v_lo AND p_event_ids[v_lo:v_hi] && v_taken THEN
            batch_append := v_a; written_id := NULL; written_revision := NULL;
            written_position := NULL; failure_code := 'retry'; failure_detail := NULL;
            RETURN NEXT;
            v_failed := true;
        END IF;
        -- The append's condition: against committed events, then against
        -- the events of the appends written before it in this batch.
        IF NOT v_failed AND p_cond_append && ARRAY[v_a] THEN
            SELECT array_agg(c.tag ORDER BY c.ord), array_agg(c.type ORDER BY c.ord),
                   array_agg(c.after ORDER BY c.ord)
              INTO v_ctags, v_ctypes, v_cafter
            FROM unnest(p_cond_append, p_cond_tags, p_cond_types, p_cond_after)
                 WITH ORDINALITY AS c(a, tag, type, after, ord)
            WHERE c.a = v_a;
            v_cpos := NULL;
            FOR v_j IN 1 .. cardinality(v_btags) LOOP
                FOR v_k IN 1 .. cardinality(v_ctags) LOOP
                    IF v_btags[v_j] = v_ctags[v_k]
                       AND (v_ctypes[v_k] IS NULL OR v_ctypes[v_k] = v_btypes[v_j]) THEN
                        v_ctag := v_btags[v_j];
                        v_ctype := v_btypes[v_j];
                        v_cpos := v_bpos[v_j];
                        EXIT;
                    END IF;
                END LOOP;
                EXIT WHEN v_cpos IS NOT NULL;
            END LOOP;
            IF v_cpos IS NULL THEN
                SELECT c.tag, c.event_type, c.global_position INTO v_ctag, v_ctype, v_cpos
                FROM sl_condition_conflict(v_ctags, v_ctypes, v_cafter) AS c;
            END IF;
            IF v_cpos IS NOT NULL THEN
                batch_append := v_a; written_id := NULL; written_revision := NULL;
                written_position := NULL; failure_code := 'SL009';
                failure_detail := json_build_object('tag', v_ctag, 'event_type', v_ctype,
                                                    'position', v_cpos)::text;
                RETURN NEXT;
                v_failed := true;
            END IF;
        END IF;
        -- Expectations (see migration 20261124000006).
        IF NOT v_failed THEN
            v_fail := NULL;
            FOR v_k IN v_first .. v_last LOOP
                v_i := v_slot[v_k];
                v_state := CASE WHEN v_rev[v_i] < v_visible[v_i] THEN -1 ELSE v_rev[v_i] END;
                IF (v_tomb[v_i] OR NOT sl_expectation_met(p_expected[v_k], v_state))
                   AND (v_fail IS NULL OR v_i < v_slot[v_fail]) THEN
                    v_fail := v_k;
                END IF;
            END LOOP;
            IF v_fail IS NOT NULL THEN
                v_i := v_slot[v_fail];
                batch_append := v_a; written_id := NULL; written_revision := NULL;
                written_position := NULL;
                IF v_tomb[v_i] THEN
                    failure_code := 'SL002';
                    failure_detail := json_build_object('stream', p_streams[v_fail])::text;
                ELSE
                    failure_code := 'SL001';
                    failure_detail := json_build_object('stream', p_streams[v_fail],
                        'expected', p_expected[v_fail],
                        'actual', CASE WHEN v_rev[v_i] < v_visible[v_i] THEN -1
                                       ELSE v_rev[v_i] END)::text;
                END IF;
                RETURN NEXT;
                v_failed := true;
            END IF;
        END IF;
        -- Written: each part continues its stream, positions follow on.
        IF NOT v_failed THEN
            FOR v_k IN v_first .. v_last LOOP
                v_i := v_slot[v_k];
                v_old[v_k] := v_rev[v_i];
                IF p_counts[v_k] > 0 THEN
                    v_rev[v_i] := v_rev[v_i] + p_counts[v_k];
                    v_dirty[v_i] := true;
                END IF;
            END LOOP;
            IF v_hi >= v_lo THEN
                FOR v_i IN v_lo .. v_hi LOOP
                    v_k := p_event_part[v_i];
                    v_written := v_written + 1;
                    v_pos[v_i] := v_head + v_written;
                    v_rev_of[v_i] := v_old[v_k] + (v_i - v_start[v_k]) + 1;
                END LOOP;
                v_taken := v_taken || p_event_ids[v_lo:v_hi];
                -- Their tags, for the conditions of the appends after it.
                SELECT v_btags || coalesce(array_agg(t.tag ORDER BY t.ord), '{}'),
                       v_btypes || coalesce(array_agg(p_types[t.e] ORDER BY t.ord), '{}'),
                       v_bpos || coalesce(array_agg(v_pos[t.e] ORDER BY t.ord), '{}')
                  INTO v_btags, v_btypes, v_bpos
                FROM unnest(p_tag_event, p_tags) WITH ORDINALITY AS t(e, tag, ord)
                WHERE t.e BETWEEN v_lo AND v_hi;
            END IF;
        END IF;
        v_first := v_last + 1;
    END LOOP;

    -- 5. Give back the positions of appends not written, and advance the
    --    streams written.
    IF v_written < cardinality(p_event_ids) THEN
        UPDATE sl_log_head h SET last_position = v_head + v_written WHERE h.singleton;
    END IF;
    IF v_written = 0 THEN
        RETURN;
    END IF;
    INSERT INTO sl_streams AS s (stream_name, last_revision)
        SELECT v_names[i], v_rev[i]
        FROM generate_subscripts(v_names, 1) AS i
        WHERE v_dirty[i]
        ORDER BY v_names[i]
    ON CONFLICT (stream_name) DO UPDATE SET last_revision = EXCLUDED.last_revision;

    -- 6. Write the events and their tags.
    INSERT INTO sl_event_tags (tag, global_position, event_type)
        SELECT t.tag, v_pos[t.e], p_types[t.e]
        FROM unnest(p_tag_event, p_tags) AS t(e, tag)
        WHERE v_pos[t.e] IS NOT NULL;
    RETURN QUERY
        INSERT INTO sl_events AS e (global_position, stream_name, stream_revision, event_id,
                                    event_type, schema_version, data, metadata)
        SELECT v_pos[u.ord], p_streams[u.part], v_rev_of[u.ord], u.id, u.t, u.v, u.d, u.m
        FROM unnest(p_event_part, p_event_ids, p_types, p_versions, p_data, p_metadata)
             WITH ORDINALITY AS u(part, id, t, v, d, m, ord)
        WHERE v_pos[u.ord] IS NOT NULL
        ORDER BY u.ord
        RETURNING NULL::integer, e.event_id, e.stream_revision, e.global_position,
                  NULL::text, NULL::text;

    PERFORM pg_notify('sl_log', (v_head + v_written)::text);
END;
$fn$;
