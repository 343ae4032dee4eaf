-- sl_append and sl_append_batch check the shape of their arguments.
--
-- The Rust side (events/src/store/append.rs) always lays the arrays out
-- right, but the functions are the log's boundary (ARCHITECTURE.md: every
-- write goes through them), and with direct database access they accepted
-- arrays of different lengths (a stream's revision moved past the events
-- written: p_counts said 3, one event came), and answered a stream or an
-- event id named twice with PostgreSQL's raw SQLSTATEs (21000 from the
-- stream upsert, 23505 from the events' unique key) instead of typed codes.
--
-- New errors (SQLSTATE, DETAIL is JSON), raised before anything is locked
-- or written:
--   SL006 the arrays do not describe an append  {"reason": "..."}
--         (lengths differ; a NULL array or element; a negative count; the
--         counts do not add up to the events, or an event names another
--         part than the counts give it; an expectation below -3; for the
--         batch, appends not numbered 1, 2, 3, ... part after part)
--   SL007 a stream named twice in one append       {"stream": "..."}
--   SL008 an event id named twice in one append    {"event_id": "..."}
-- In sl_append_batch "one append" is one append of the batch: appends of a
-- batch may name the same streams (each is decided after the ones before
-- it), and an event id written by an earlier append of the batch is that
-- append's retry ('retry' row), as before.
--
-- The functions are otherwise unchanged: each starts with
-- PERFORM sl_append_check(...) and goes on as in migrations
-- 20261122000002 (sl_append) and 20261124000006 (sl_append_batch).

-- Raises SL006, SL007 or SL008 when the arrays do not describe appends.
-- p_part_append is NULL for sl_append (one append), or the batch's
-- numbering of the parts.
CREATE FUNCTION sl_append_check(
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
    p_batch       boolean
) RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_parts   integer := coalesce(cardinality(p_streams), 0);
    v_n       integer := coalesce(cardinality(p_event_ids), 0);
    v_reason  text;
    v_next    integer;
    v_append  integer;
    v_k       integer;
    v_streams bigint;
    v_ids     bigint;
    v_stream  text;
    v_id      uuid;
BEGIN
    -- Every array is given, and the arrays of a kind have one length.
    v_reason := CASE
        WHEN p_streams IS NULL THEN 'p_streams is NULL'
        WHEN p_expected IS NULL THEN 'p_expected is NULL'
        WHEN p_counts IS NULL THEN 'p_counts is NULL'
        WHEN p_event_part IS NULL THEN 'p_event_part is NULL'
        WHEN p_event_ids IS NULL THEN 'p_event_ids is NULL'
        WHEN p_types IS NULL THEN 'p_types is NULL'
        WHEN p_versions IS NULL THEN 'p_versions is NULL'
        WHEN p_data IS NULL THEN 'p_data is NULL'
        WHEN p_metadata IS NULL THEN 'p_metadata is NULL'
        WHEN p_batch AND p_part_append IS NULL THEN 'p_part_append is NULL'
        WHEN cardinality(p_expected) <> v_parts OR cardinality(p_counts) <> v_parts
             OR (p_batch AND cardinality(p_part_append) <> v_parts) THEN
            format('the part arrays differ in length: %s stream(s), %s expectation(s), %s count(s)%s',
                   v_parts, cardinality(p_expected), cardinality(p_counts),
                   CASE WHEN p_batch THEN format(', %s append number(s)', cardinality(p_part_append))
                        ELSE '' END)
        WHEN cardinality(p_event_part) <> v_n OR cardinality(p_types) <> v_n
             OR cardinality(p_versions) <> v_n OR cardinality(p_data) <> v_n
             OR cardinality(p_metadata) <> v_n THEN
            format('the event arrays differ in length: %s id(s), %s part(s), %s type(s), %s version(s), %s data, %s metadata',
                   v_n, cardinality(p_event_part), cardinality(p_types), cardinality(p_versions),
                   cardinality(p_data), cardinality(p_metadata))
        WHEN array_position(p_streams, NULL) IS NOT NULL THEN 'p_streams has a NULL element'
        WHEN array_position(p_expected, NULL) IS NOT NULL THEN 'p_expected has a NULL element'
        WHEN array_position(p_counts, NULL) IS NOT NULL THEN 'p_counts has a NULL element'
        WHEN array_position(p_event_part, NULL) IS NOT NULL THEN 'p_event_part has a NULL element'
        WHEN array_position(p_event_ids, NULL) IS NOT NULL THEN 'p_event_ids has a NULL element'
        WHEN array_position(p_types, NULL) IS NOT NULL THEN 'p_types has a NULL element'
        WHEN array_position(p_versions, NULL) IS NOT NULL THEN 'p_versions has a NULL element'
        WHEN array_position(p_data, NULL) IS NOT NULL THEN 'p_data has a NULL element'
        WHEN array_position(p_metadata, NULL) IS NOT NULL THEN 'p_metadata has a NULL element'
        WHEN p_batch AND array_position(p_part_append, NULL) IS NOT NULL THEN
            'p_part_append has a NULL element'
    END;
    -- The layout, part by part with simple expressions (no statement to
    -- plan): counts not negative and adding up to the events, each event
    -- naming the part the counts give it, expectations known, and for the
    -- batch, appends numbered 1, 2, 3, ... part after part.
    IF v_reason IS NULL THEN
        v_next := 1;
        v_append := 1;
        FOR v_k IN 1 .. v_parts LOOP
            IF p_counts[v_k] < 0 THEN
                v_reason := format('p_counts[%s] is negative', v_k);
            ELSIF p_counts[v_k] > 0
                  AND NOT p_event_part[v_next : v_next + p_counts[v_k] - 1] <@ ARRAY[v_k] THEN
                v_reason := format('the events of part %s are not the %s event(s) after those of the parts before it',
                                   v_k, p_counts[v_k]);
            ELSIF p_expected[v_k] < -3 THEN
                v_reason := format('expectation %s is none of -1 (any), -2 (no stream), -3 (stream exists) or a revision',
                                   p_expected[v_k]);
            ELSIF p_batch AND p_part_append[v_k] - v_append NOT IN (0, 1)
                  OR p_batch AND v_k = 1 AND p_part_append[1] <> 1 THEN
                v_reason := 'p_part_append must number the appends 1, 2, 3, ... part after part';
            END IF;
            v_append := p_part_append[v_k];
            EXIT WHEN v_reason IS NOT NULL;
            v_next := v_next + p_counts[v_k];
        END LOOP;
        IF v_reason IS NULL AND v_next - 1 <> v_n THEN
            v_reason := format('p_counts adds up to %s event(s), %s given', v_next - 1, v_n);
        END IF;
    END IF;
    -- A stream or an event id named twice within one append: one statement
    -- counts them (none to count in a one-part, one-event append), and only
    -- then does a second one find which.
    IF v_reason IS NULL AND (v_parts > 1 OR v_n > 1) THEN
        IF p_batch THEN
            SELECT (SELECT count(DISTINCT (t.a, t.s)) FROM unnest(p_part_append, p_streams) AS t(a, s)),
                   (SELECT count(DISTINCT (p_part_append[t.part], t.id))
                    FROM unnest(p_event_part, p_event_ids) AS t(part, id))
              INTO v_streams, v_ids;
        ELSE
            SELECT (SELECT count(DISTINCT s) FROM unnest(p_streams) AS s),
                   (SELECT count(DISTINCT i) FROM unnest(p_event_ids) AS i)
              INTO v_streams, v_ids;
        END IF;
        IF v_streams < v_parts THEN
            SELECT t.s INTO v_stream
            FROM unnest(p_streams, coalesce(p_part_append, array_fill(1, ARRAY[v_parts]))) AS t(s, a)
            GROUP BY t.a, t.s HAVING count(*) > 1 ORDER BY t.a, t.s LIMIT 1;
        ELSIF v_ids < v_n THEN
            SELECT t.id INTO v_id
            FROM unnest(p_event_part, p_event_ids) AS t(part, id)
            GROUP BY coalesce(p_part_append[t.part], 1), t.id HAVING count(*) > 1
            ORDER BY coalesce(p_part_append[t.part], 1), t.id LIMIT 1;
        END IF;
    END IF;
    IF v_reason IS NOT NULL THEN
        RAISE EXCEPTION 'these arrays do not describe an append: %', v_reason
            USING ERRCODE = 'SL006', DETAIL = json_build_object('reason', v_reason)::text;
    END IF;
    IF v_stream IS NOT NULL THEN
        RAISE EXCEPTION 'stream % is named twice in one append', v_stream
            USING ERRCODE = 'SL007', DETAIL = json_build_object('stream', v_stream)::text;
    END IF;
    IF v_id IS NOT NULL THEN
        RAISE EXCEPTION 'event id % is named twice in one append', v_id
            USING ERRCODE = 'SL008', DETAIL = json_build_object('event_id', v_id)::text;
    END IF;
END;
$fn$;

-- sl_append as in migration 20261122000002, checking its arguments first.
CREATE OR REPLACE FUNCTION sl_append(
    p_streams    text[],
    p_expected   bigint[],
    p_counts     integer[],
    p_event_part integer[],
    p_event_ids  uuid[],
    p_types      text[],
    p_versions   integer[],
    p_data       jsonb[],
    p_metadata   jsonb[]
) RETURNS TABLE (event_id uuid, stream_name text, stream_revision bigint, global_position bigint)
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
BEGIN
    -- 0. The arrays describe one append (SL006, SL007, SL008).
    PERFORM sl_append_check(NULL, p_streams, p_expected, p_counts, p_event_part, p_event_ids,
                            p_types, p_versions, p_data, p_metadata, false);
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
        RETURN QUERY SELECT * FROM sl_append_retry(p_streams, p_event_part, p_event_ids);
        RETURN;
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

    -- 5. Write the events at the positions taken in step 1.
    RETURN QUERY
        INSERT INTO sl_events AS e (global_position, stream_name, stream_revision, event_id,
                                    event_type, schema_version, data, metadata)
        SELECT v_first_pos + u.ord - 1,
               p_streams[u.part],
               v_old[u.part] + (u.ord - v_start[u.part]) + 1,
               u.id, u.t, u.v, u.d, u.m
        FROM unnest(p_event_part, p_event_ids, p_types, p_versions, p_data, p_metadata)
             WITH ORDINALITY AS u(part, id, t, v, d, m, ord)
        RETURNING e.event_id, e.stream_name, e.stream_revision, e.global_position;

    PERFORM pg_notify('sl_log', (v_first_pos + v_n - 1)::text);
END;
$fn$;

-- sl_append_batch as in migration 20261124000006, checking its arguments
-- first.
CREATE OR REPLACE FUNCTION sl_append_batch(
    p_part_append integer[],
    p_streams     text[],
    p_expected    bigint[],
    p_counts      integer[],
    p_event_part  integer[],
    p_event_ids   uuid[],
    p_types       text[],
    p_versions    integer[],
    p_data        jsonb[],
    p_metadata    jsonb[]
) RETURNS TABLE (batch_append integer, written_id uuid, written_revision bigint,
                 written_position bigint, failure_code text, failure_detail text)
LANGUAGE plpgsql
-- As sl_append: point lookups and small inserts; no sequential scans, no JIT.
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_parts    integer;
    v_appends  integer;
    v_head     bigint;
    v_written  integer := 0;
    -- The batch's distinct streams, in name order, and their state as the
    -- appends decided so far leave it.
    v_names    text[];
    v_rev      bigint[];
    v_visible  bigint[];
    v_tomb     boolean[];
    v_dirty    boolean[];
    -- Per part: its stream's index in v_names, its first event, the
    -- stream's revision before it.
    v_slot     integer[];
    v_start    integer[];
    v_old      bigint[];
    -- Per event: where it goes (NULL: not written).
    v_pos      bigint[];
    v_rev_of   bigint[];
    -- Event ids in the log already, or written by this batch.
    v_taken    uuid[];
    v_a        integer;
    v_k        integer;
    v_i        integer;
    v_first    integer := 1;
    v_last     integer;
    v_lo       integer;
    v_hi       integer;
    v_state    bigint;
    v_failed   boolean;
    v_fail     integer;
BEGIN
    -- 0. The arrays describe appends, none naming a stream or an event id
    --    twice (SL006, SL007, SL008).
    PERFORM sl_append_check(p_part_append, p_streams, p_expected, p_counts, p_event_part,
                            p_event_ids, p_types, p_versions, p_data, p_metadata, true);
    v_parts := cardinality(p_streams);
    v_appends := coalesce(p_part_append[cardinality(p_part_append)], 0);
    v_start := array_fill(NULL::integer, ARRAY[v_parts]);
    v_old := array_fill(NULL::bigint, ARRAY[v_parts]);
    v_pos := array_fill(NULL::bigint, ARRAY[cardinality(p_event_ids)]);
    v_rev_of := array_fill(NULL::bigint, ARRAY[cardinality(p_event_ids)]);

    -- 1. Take the head of the log first and hold it to commit, as sl_append
    --    does: locks are taken in one order (head, then streams by name),
    --    and no other append commits until this one has. Positions are
    --    taken for every event; step 5 gives back those of appends not
    --    written.
    UPDATE sl_log_head h SET last_position = h.last_position + cardinality(p_event_ids)
        WHERE h.singleton
        RETURNING h.last_position - cardinality(p_event_ids) INTO v_head;

    -- 2. In one statement: the event ids already written (retries); the
    --    streams in name order and their state; each part's slot (its
    --    stream's index in v_names). Every function that changes sl_streams
    --    takes the head first, so, holding it, this read is the state until
    --    commit; the rows are locked when they are written (step 5).
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
        -- Expectations: of the parts whose expectation fails, the one whose
        -- stream comes first by name is reported (sl_append checks in name
        -- order, so the error names the same stream).
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
            END IF;
        END IF;
        v_first := v_last + 1;
    END LOOP;

    -- 5. Give back the positions of appends not written (positions stay
    --    dense), and advance the streams written.
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

    -- 6. Write the events.
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
