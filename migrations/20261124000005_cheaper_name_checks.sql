-- The same name rules, checked without bounded repetition.
--
-- PostgreSQL's regex engine expands a bounded repetition such as {0,199}
-- into that many states: checking one stream name against migration 1's
-- pattern cost about 27 µs, and every append checks each stream it touches
-- (the upsert of sl_streams) and each event's type (about 7 µs), all while
-- holding the head of the log. The rules are unchanged: the same character
-- classes with an unbounded repetition, and the length bound as a length.
--
-- * stream name: optionally '$$', then [A-Za-z0-9], then up to 199 of
--   [A-Za-z0-9_.:@-] (so at most 200 characters, 202 with '$$');
-- * event type: optionally '$', then [A-Za-z], then up to 127 of
--   [A-Za-z0-9_.] (at most 128 characters, 129 with '$').

ALTER TABLE sl_streams DROP CONSTRAINT sl_streams_stream_name_check;
ALTER TABLE sl_streams ADD CONSTRAINT sl_streams_stream_name_check CHECK (
    stream_name ~ '^(\$\$)?[A-Za-z0-9][A-Za-z0-9_.:@-]*$'
    AND char_length(stream_name) <= CASE WHEN left(stream_name, 2) = '$$' THEN 202 ELSE 200 END
);

ALTER TABLE sl_events DROP CONSTRAINT sl_events_type_format;
ALTER TABLE sl_events ADD CONSTRAINT sl_events_type_format CHECK (
    event_type ~ '^\$?[A-Za-z][A-Za-z0-9_.]*$'
    AND char_length(event_type) <= CASE WHEN left(event_type, 1) = '$' THEN 129 ELSE 128 END
);
