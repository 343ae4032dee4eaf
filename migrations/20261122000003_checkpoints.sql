-- Where each log follower (process manager, projection) has got to: the
-- global position of the last event whose effects it has committed.
CREATE TABLE sl_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
