-- One call for a whole batch of appends, each with its own answer.
--
-- The store's writer task sends the appends that arrive together in one
-- call (group commit, docs/event-store.md). Until now it merged only appends
-- on disjoint streams into one sl_append call, and one wrong expectation
-- failed the whole call: the writer then ran the culprit alone and the rest
-- again, and an append bound to fail cost the writer a call of its own.
--
-- sl_append_batch takes the appends in order and decides each one against
-- the state the ones before it left, exactly as if each had run alone, one
-- after the other: an append whose expectation does not hold (SL001) or that
-- names a tombstoned stream (SL002) gets its error as a row and writes
-- nothing; the others are written. Appends may name the same streams. So
-- any batch is one call, one transaction, one commit.
--
-- An append some of whose event ids are in the log already (a retry), or
-- were written by an earlier append of the same batch, is answered
-- 'retry': the writer runs it alone with sl_append afterwards, which
-- returns the stored events or the retry's own error (SL003, SL004).
--
-- Arguments are sl_append's, plus p_part_append: for each part, the
-- (1-based) append of the batch it belongs to; the parts of an append are
-- contiguous and appends are numbered in order. Rows returned: one per
-- event written (batch_append NULL: the caller knows its event ids), and
-- one per append not written (batch_append, failure_code, failure_detail).
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
    p_metadata    jsonb[]
) RETURNS TABLE (batch_append integer, written_id uuid, written_revision bigint,
                 written_position bigint, failure_code text, failure_detail text)
LANGUAGE plpgsql
-- As sl_append: point lookups and small inserts; no sequential scans, no JIT.
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_parts    integer := cardinality(p_streams);
    v_appends  integer := coalesce(p_part_append[cardinality(p_part_append)], 0);
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
    v_start    integer[] := array_fill(NULL::integer, ARRAY[v_parts]);
    v_old      bigint[]  := array_fill(NULL::bigint, ARRAY[v_parts]);
    -- Per event: where it goes (NULL: not written).
    v_pos      bigint[]  := array_fill(NULL::bigint, ARRAY[cardinality(p_event_ids)]);
    v_rev_of   bigint[]  := array_fill(NULL::bigint, ARRAY[cardinality(p_event_ids)]);
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
