-- The event log: streams, events and the head of the global order.
--
-- Invariants (see docs/event-store.md):
-- * sl_events is append-only: a trigger rejects UPDATE, DELETE and TRUNCATE.
-- * global_position is 1, 2, 3, ... with no gaps, and transactions commit in
--   global_position order: sl_append takes the one row of sl_log_head as its
--   last step and holds it until commit, so a reader that sees position n sees
--   every position below n.
-- * (stream_name, stream_revision) and event_id are unique.

CREATE TABLE sl_log_head (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position bigint  NOT NULL
);
INSERT INTO sl_log_head (singleton, last_position) VALUES (true, 0);

CREATE TABLE sl_streams (
    -- a user stream name, or '$$' and a user stream name for its lifecycle stream
    stream_name   text    PRIMARY KEY
                  CHECK (stream_name ~ '^(\$\$)?[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$'),
    -- revision of the last event ever appended (-1: none yet)
    last_revision bigint  NOT NULL DEFAULT -1,
    -- revisions below this are hidden (a soft delete moves it past the end)
    visible_from  bigint  NOT NULL DEFAULT 0,
    tombstoned    boolean NOT NULL DEFAULT false
);

CREATE TABLE sl_events (
    global_position bigint      NOT NULL,
    stream_name     text        NOT NULL,
    stream_revision bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sl_events_pkey PRIMARY KEY (global_position),
    CONSTRAINT sl_events_data_is_object CHECK (jsonb_typeof(data) = 'object'),
    CONSTRAINT sl_events_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT sl_events_type_format CHECK (event_type ~ '^\$?[A-Za-z][A-Za-z0-9_.]{0,127}$'),
    CONSTRAINT sl_events_event_id_key UNIQUE (event_id),
    CONSTRAINT sl_events_stream_revision_key UNIQUE (stream_name, stream_revision)
);
CREATE INDEX sl_events_category_idx ON sl_events (split_part(stream_name, '-', 1), global_position);
CREATE INDEX sl_events_type_idx ON sl_events (event_type, global_position);

CREATE FUNCTION sl_events_reject_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'sl_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'SL900';
END;
$fn$;
CREATE TRIGGER sl_events_append_only_rows
    BEFORE UPDATE OR DELETE ON sl_events
    FOR EACH ROW EXECUTE FUNCTION sl_events_reject_change();
CREATE TRIGGER sl_events_append_only_truncate
    BEFORE TRUNCATE ON sl_events
    FOR EACH STATEMENT EXECUTE FUNCTION sl_events_reject_change();

-- Expected revisions travel as bigint: -1 any, -2 no stream, -3 stream exists,
-- n >= 0 exactly revision n. A stream's state is -1 (no stream: never written,
-- or nothing written since a soft delete) or its last revision.
CREATE FUNCTION sl_expectation_met(p_expected bigint, p_state bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE
        WHEN p_expected = -1 THEN true
        WHEN p_expected = -2 THEN p_state = -1
        WHEN p_expected = -3 THEN p_state >= 0
        ELSE p_expected = p_state
    END
$fn$;

-- Appends events to one or more streams, all or nothing.
--
-- Errors (SQLSTATE, DETAIL is JSON):
--   SL001 wrong expected revision  {"stream", "expected", "actual"}
--   SL002 stream tombstoned        {"stream"}
--   SL003 partial duplicate        {"written": [ids], "not_written": [ids]}
--   SL004 event ids written elsewhere (another stream or order) {"event_ids": [ids]}
-- A retry whose events were all written already, in these streams and in this
-- order, returns the original revisions and positions and writes nothing.
CREATE FUNCTION sl_append(
    p_streams       text[],
    p_expected      bigint[],
    p_event_streams text[],
    p_event_ids     uuid[],
    p_types         text[],
    p_versions      integer[],
    p_data          jsonb[],
    p_metadata      jsonb[]
) RETURNS TABLE (event_id uuid, stream_name text, stream_revision bigint, global_position bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n         integer := cardinality(p_event_ids);
    v_found     integer;
    v_same      boolean;
    v_row       record;
    v_state     bigint;
    v_expected  bigint;
    v_names     text[] := '{}';
    v_last      bigint[] := '{}';
    v_visible   bigint[] := '{}';
    v_tomb      boolean[] := '{}';
    v_i         integer;
    v_first_pos bigint;
BEGIN
    -- 1. Lock the streams' rows in name order, creating those that are new.
    --    Everything below runs after any concurrent append to these streams
    --    has committed or rolled back.
    INSERT INTO sl_streams AS s (stream_name)
        SELECT name FROM unnest(p_streams) AS t(name) ORDER BY name
        ON CONFLICT DO NOTHING;
    FOR v_row IN
        SELECT s.stream_name, s.last_revision, s.visible_from, s.tombstoned
        FROM sl_streams s WHERE s.stream_name = ANY (p_streams)
        ORDER BY s.stream_name FOR UPDATE
    LOOP
        v_names := v_names || v_row.stream_name;
        v_last := v_last || v_row.last_revision;
        v_visible := v_visible || v_row.visible_from;
        v_tomb := v_tomb || v_row.tombstoned;
    END LOOP;

    -- 2. A retry of an append that was written already writes nothing.
    SELECT count(*) INTO v_found FROM sl_events e WHERE e.event_id = ANY (p_event_ids);
    IF v_found > 0 THEN
        IF v_found < v_n THEN
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
                SELECT u.s,
                       e.stream_name = u.s AS same_stream,
                       e.stream_revision - row_number() OVER (PARTITION BY u.s ORDER BY u.ord) AS base
                FROM unnest(p_event_ids, p_event_streams) WITH ORDINALITY AS u(id, s, ord)
                JOIN sl_events e ON e.event_id = u.id
            ) per_event
            GROUP BY per_event.s
        ) per_stream;
        IF NOT v_same THEN
            RAISE EXCEPTION 'these event ids were written already, to other streams or in another order'
                USING ERRCODE = 'SL004', DETAIL = json_build_object('event_ids', to_json(p_event_ids))::text;
        END IF;
        RETURN QUERY
            SELECT e.event_id, e.stream_name, e.stream_revision, e.global_position
            FROM unnest(p_event_ids) WITH ORDINALITY AS u(id, ord)
            JOIN sl_events e ON e.event_id = u.id
            ORDER BY u.ord;
        RETURN;
    END IF;

    -- 3. Check every expectation against the locked rows.
    FOR v_i IN 1 .. cardinality(v_names) LOOP
        IF v_tomb[v_i] THEN
            RAISE EXCEPTION 'stream % is tombstoned', v_names[v_i]
                USING ERRCODE = 'SL002', DETAIL = json_build_object('stream', v_names[v_i])::text;
        END IF;
        v_state := CASE WHEN v_last[v_i] < v_visible[v_i] THEN -1 ELSE v_last[v_i] END;
        v_expected := p_expected[array_position(p_streams, v_names[v_i])];
        IF NOT sl_expectation_met(v_expected, v_state) THEN
            RAISE EXCEPTION 'wrong expected revision on stream %', v_names[v_i]
                USING ERRCODE = 'SL001', DETAIL = json_build_object(
                    'stream', v_names[v_i], 'expected', v_expected, 'actual', v_state)::text;
        END IF;
    END LOOP;

    UPDATE sl_streams s SET last_revision = s.last_revision + c.n
    FROM (SELECT name, count(*) AS n FROM unnest(p_event_streams) AS t(name) GROUP BY name) c
    WHERE s.stream_name = c.name;

    -- 4. Take the head of the log last: from here to commit no other append can
    --    commit, so positions commit in order and without gaps.
    UPDATE sl_log_head SET last_position = last_position + v_n
        RETURNING last_position - v_n + 1 INTO v_first_pos;

    RETURN QUERY
        INSERT INTO sl_events AS e (global_position, stream_name, stream_revision, event_id,
                                    event_type, schema_version, data, metadata)
        SELECT v_first_pos + u.ord - 1,
               u.s,
               v_last[array_position(v_names, u.s)] + row_number() OVER (PARTITION BY u.s ORDER BY u.ord),
               u.id, u.t, u.v, u.d, u.m
        FROM unnest(p_event_streams, p_event_ids, p_types, p_versions, p_data, p_metadata)
             WITH ORDINALITY AS u(s, id, t, v, d, m, ord)
        RETURNING e.event_id, e.stream_name, e.stream_revision, e.global_position;

    PERFORM pg_notify('sl_log', (v_first_pos + v_n - 1)::text);
END;
$fn$;

-- Soft-deletes (p_tombstone false) or tombstones (true) a stream, recording a
-- lifecycle event in the stream '$$' || p_stream. Returns that event's position.
--   SL001 wrong expected revision {"stream", "expected", "actual"}
--   SL002 stream tombstoned       {"stream"}
--   SL005 stream not found (soft delete of a stream with nothing visible) {"stream"}
CREATE FUNCTION sl_delete_stream(
    p_stream    text,
    p_expected  bigint,
    p_tombstone boolean,
    p_event_id  uuid,
    p_metadata  jsonb
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_row       sl_streams%ROWTYPE;
    v_state     bigint;
    v_meta_rev  bigint;
    v_pos       bigint;
BEGIN
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

    INSERT INTO sl_streams (stream_name) VALUES ('$$' || p_stream) ON CONFLICT DO NOTHING;
    UPDATE sl_streams SET last_revision = last_revision + 1
        WHERE stream_name = '$$' || p_stream RETURNING last_revision INTO v_meta_rev;

    UPDATE sl_log_head SET last_position = last_position + 1 RETURNING last_position INTO v_pos;
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
