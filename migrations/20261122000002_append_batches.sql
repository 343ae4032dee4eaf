-- Faster appends and group commit.
--
-- * sl_append takes its events laid out part by part (each event names its
--   part), locks and advances every stream in one upsert, and checks the
--   expectations afterwards: five statements on the common path instead of
--   eight. It takes the head of the log FIRST (migration 1 took it last):
--   every function that locks stream rows now takes the head before them, so
--   locks are always taken in the same order and a batch of appends (which
--   holds the head from its first append on) cannot deadlock with another
--   writer.
-- * A part with count 0 is a guard: its expectation is checked, nothing is
--   written to it. The store's writer task merges concurrent appends on
--   disjoint streams into one call (group commit, docs/event-store.md).
--
-- Errors are the same as before: SL001 wrong expected revision, SL002
-- tombstoned, SL003 partial duplicate, SL004 event ids taken, SL005 not found.

DROP FUNCTION sl_append(text[], bigint[], text[], uuid[], text[], integer[], jsonb[], jsonb[]);

-- The slow path of an append whose event ids exist already: an exact retry
-- returns the stored events; anything else is an error.
CREATE FUNCTION sl_append_retry(
    p_streams    text[],
    p_event_part integer[],
    p_event_ids  uuid[]
) RETURNS TABLE (event_id uuid, stream_name text, stream_revision bigint, global_position bigint)
LANGUAGE plpgsql
-- Every statement here is a point lookup or a small insert. PL/pgSQL caches
-- a generic plan after a few calls; one made while the log was small could
-- keep scanning sl_events sequentially as it grows, so sequential scans are
-- ruled out. JIT (which a high estimate may trigger) costs tens of
-- milliseconds per statement here and never pays back.
SET enable_seqscan = off
SET jit = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_found integer;
    v_same  boolean;
BEGIN
    -- Runs inside sl_append, which holds the head of the log: no append is
    -- in flight, so what is stored now is final.
    SELECT count(*) INTO v_found FROM sl_events e WHERE e.event_id = ANY (p_event_ids);
    IF v_found < cardinality(p_event_ids) THEN
        RAISE EXCEPTION 'some events of this append were written already, others not'
            USING ERRCODE = 'SL003', DETAIL = (
                SELECT json_build_object(
                    'written', coalesce(json_agg(u.id ORDER BY u.ord) FILTER (WHERE e.event_id IS NOT NULL), '[]'),
                    'not_written', coalesce(json_agg(u.id ORDER BY u.ord) FILTER (WHERE e.event_id IS NULL), '[]'))
                FROM unnest(p_event_ids) WITH ORDINALITY AS u(id, ord)
                LEFT JOIN sl_events e ON e.event_id = u.id)::text;
    END IF;
    SELECT coalesce(bool_and(ok), false) INTO v_same FROM (
        SELECT bool_and(same_stream) AND count(DISTINCT base) = 1 AS ok
        FROM (
            SELECT u.part,
                   e.stream_name = p_streams[u.part] AS same_stream,
                   e.stream_revision - row_number() OVER (PARTITION BY u.part ORDER BY u.ord) AS base
            FROM unnest(p_event_ids, p_event_part) WITH ORDINALITY AS u(id, part, ord)
            JOIN sl_events e ON e.event_id = u.id
        ) per_event
        GROUP BY per_event.part
    ) per_part;
    IF NOT v_same THEN
        RAISE EXCEPTION 'these event ids were written already, to other streams or in another order'
            USING ERRCODE = 'SL004', DETAIL = json_build_object('event_ids', to_json(p_event_ids))::text;
    END IF;
    RETURN QUERY
        SELECT e.event_id, e.stream_name, e.stream_revision, e.global_position
        FROM unnest(p_event_ids) WITH ORDINALITY AS u(id, ord)
        JOIN sl_events e ON e.event_id = u.id
        ORDER BY u.ord;
END;
$fn$;

-- Appends to one or more streams, all or nothing. p_streams, p_expected and
-- p_counts describe the parts (a part with count 0 is a guard: its
-- expectation is checked and nothing is written to it); every event names its
-- part (1-based) in p_event_part, and the events of a part are in order.
CREATE FUNCTION sl_append(
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
-- Every statement here is a point lookup or a small insert. PL/pgSQL caches
-- a generic plan after a few calls; one made while the log was small could
-- keep scanning sl_events sequentially as it grows, so sequential scans are
-- ruled out. JIT (which a high estimate may trigger) costs tens of
-- milliseconds per statement here and never pays back.
SET enable_seqscan = off
SET jit = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_parts     integer := cardinality(p_streams);
    v_n         integer := cardinality(p_event_ids);
    v_row       record;
    v_k         integer;
    v_old       bigint[] := array_fill(NULL::bigint, ARRAY[cardinality(p_streams)]);
    v_visible   bigint[] := array_fill(NULL::bigint, ARRAY[cardinality(p_streams)]);
    v_tomb      boolean[] := array_fill(NULL::boolean, ARRAY[cardinality(p_streams)]);
    v_start     integer[] := array_fill(NULL::integer, ARRAY[cardinality(p_streams)]);
    v_state     bigint;
    v_first_pos bigint;
BEGIN
    -- 1. Take the head of the log first and hold it to commit. Every function
    --    that locks streams takes the head first, so locks are always taken
    --    in one order (head, then streams by name) and appends cannot
    --    deadlock; and from here to commit no other append can commit, so
    --    positions commit in order and without gaps.
    UPDATE sl_log_head SET last_position = last_position + v_n WHERE singleton
        RETURNING last_position - v_n + 1 INTO v_first_pos;

    -- 2. A retry of an append that was written already writes nothing.
    IF EXISTS (SELECT 1 FROM sl_events e WHERE e.event_id = ANY (p_event_ids)) THEN
        UPDATE sl_log_head SET last_position = last_position - v_n WHERE singleton;
        RETURN QUERY SELECT * FROM sl_append_retry(p_streams, p_event_part, p_event_ids);
        RETURN;
    END IF;

    -- 3. Lock and advance every stream in one statement, in name order.
    --    New streams are created.
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

-- Soft delete and tombstone, as in migration 1 but taking the head of the log
-- first, like sl_append.
CREATE OR REPLACE FUNCTION sl_delete_stream(
    p_stream    text,
    p_expected  bigint,
    p_tombstone boolean,
    p_event_id  uuid,
    p_metadata  jsonb
) RETURNS bigint
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_row       sl_streams%ROWTYPE;
    v_state     bigint;
    v_meta_rev  bigint;
    v_pos       bigint;
BEGIN
    UPDATE sl_log_head SET last_position = last_position + 1 WHERE singleton RETURNING last_position INTO v_pos;
    INSERT INTO sl_streams (stream_name) VALUES (p_stream) ON CONFLICT DO NOTHING;
    SELECT * INTO v_row FROM sl_streams WHERE stream_name = p_stream FOR UPDATE;
    IF v_row.tombstoned THEN
        RAISE EXCEPTION 'stream % is tombstoned', p_stream
            USING ERRCODE = 'SL002', DETAIL = json_build_object('stream', p_stream)::text;
    END IF;
    v_state := CASE WHEN v_row.last_revision < v_row.visible_from THEN -1 ELSE v_row.last_revision END;
    IF NOT sl_expectation_met(p_expected, v_state) THEN
        RAISE EXCEPTION 'wrong expected revision on stream %', p_stream
            USING ERRCODE = 'SL001', DETAIL = json_build_object(
                'stream', p_stream, 'expected', p_expected, 'actual', v_state)::text;
    END IF;
    IF v_state = -1 AND NOT p_tombstone THEN
        RAISE EXCEPTION 'stream % has nothing to delete', p_stream
            USING ERRCODE = 'SL005', DETAIL = json_build_object('stream', p_stream)::text;
    END IF;
    UPDATE sl_streams SET visible_from = v_row.last_revision + 1, tombstoned = p_tombstone
        WHERE stream_name = p_stream;

    INSERT INTO sl_streams (stream_name, last_revision) VALUES ('$$' || p_stream, 0)
        ON CONFLICT (stream_name) DO UPDATE SET last_revision = sl_streams.last_revision + 1
        RETURNING last_revision INTO v_meta_rev;

    INSERT INTO sl_events (global_position, stream_name, stream_revision, event_id,
                           event_type, schema_version, data, metadata)
    VALUES (v_pos, '$$' || p_stream, v_meta_rev, p_event_id,
            CASE WHEN p_tombstone THEN '$StreamTombstoned' ELSE '$StreamDeleted' END, 1,
            json_build_object('stream', p_stream, 'last_revision', v_row.last_revision)::jsonb,
            p_metadata);
    PERFORM pg_notify('sl_log', v_pos::text);
    RETURN v_pos;
END;
$fn$;
