-- The derived feeds (issue 17): who gained, lost or changed access to what
-- with each event of the log, and the notifications the log's events make.
-- Written by one follower (`shareledger_projections::derived`) in the same
-- transaction as its checkpoint `derived`: rows exist for every position up
-- to the checkpoint and for none after it.

CREATE TABLE sl_access_changes (
    position     bigint      NOT NULL,
    seq          integer     NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    user_site    uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    username     text        NOT NULL,
    target_site  uuid        NOT NULL,
    target_type  text        NOT NULL CHECK (target_type IN ('scorecard', 'object')),
    target_id    uuid        NOT NULL,
    target_name  text        NOT NULL,
    level_before text,
    level_after  text,
    PRIMARY KEY (position, seq)
);
CREATE INDEX sl_access_changes_user_site ON sl_access_changes (user_site, position);
CREATE INDEX sl_access_changes_target_site ON sl_access_changes (target_site, position);

CREATE TABLE sl_notifications (
    position    bigint      NOT NULL,
    seq         integer     NOT NULL,
    event_id    uuid        NOT NULL,
    kind        text        NOT NULL,
    site        uuid        NOT NULL,
    body        jsonb       NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX sl_notifications_site ON sl_notifications (site, position);
