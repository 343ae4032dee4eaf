-- Indexes for looking back (projections/src/history, docs/audit.md): which
-- site a user, a scorecard or an object belongs to, found from the event
-- that created it, so that an as-of question can replay only the streams
-- it needs. Partial indexes: other events pay only the predicate check.

CREATE INDEX sl_events_user_added_idx ON sl_events ((data -> 'user' ->> 'user_id'))
    WHERE event_type = 'UserAdded';
CREATE INDEX sl_events_scorecard_created_idx ON sl_events ((data ->> 'scorecard_id'))
    WHERE event_type = 'ScorecardCreated';
CREATE INDEX sl_events_object_created_idx ON sl_events ((data ->> 'object_id'))
    WHERE event_type = 'ObjectCreated';
