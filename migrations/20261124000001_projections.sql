-- Read models kept in PostgreSQL tables (projections/src/runtime.rs,
-- docs/read-models.md).
--
-- * Each projection's tables live in one schema per *generation*,
--   rm_<name>_g<N>, created by the projection runtime (never by migrations:
--   their shape belongs to the projection's code and version). A rebuild
--   fills generation N+1 beside the live generation N.
-- * Schema rm holds one view per live table, rm.<table>, pointing at the live
--   generation. SQL consumers read these views only; the runtime replaces
--   them, updates the registry and drops the old generation in one
--   transaction, so a switch is never seen half done.
-- * sl_projections is the registry: which generation is live and with which
--   version of the projection's code it was built, and which generation is
--   being built, if any. The runtime changes a row only under
--   pg_advisory_xact_lock(hashtext('sl_projections'), hashtext(name)), so
--   several processes running the same projections agree on it.
-- * Each generation's position is its checkpoint in sl_checkpoints, named
--   projection:<name>:g<N>, written in the same transaction as the
--   generation's tables (exactly-once effects).

CREATE SCHEMA rm;

CREATE TABLE sl_projections (
    name                text        PRIMARY KEY
                        CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    -- the generation the views of schema rm show, and the version of the
    -- projection's code that built it
    live_generation     integer     NOT NULL CHECK (live_generation >= 1),
    live_version        integer     NOT NULL CHECK (live_version >= 0),
    -- the generation being rebuilt beside it, if any
    building_generation integer     NULL,
    building_version    integer     NULL CHECK (building_version >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sl_projections_building_complete
        CHECK ((building_generation IS NULL) = (building_version IS NULL)),
    CONSTRAINT sl_projections_building_is_newer
        CHECK (building_generation > live_generation)
);
