-- The append functions plan their statements once per connection.
--
-- PL/pgSQL caches each statement's plan, but a statement with parameters
-- (here: the function's arrays) gets a custom plan, made anew at every
-- call, until the planner judges a generic one as cheap; for statements
-- over unnest() of parameter arrays it seldom does. So every append
-- planned some twenty statements again (and parsed and inlined
-- sl_condition_conflict for each), while holding the head of the log:
-- measured with pg_stat_statements in `shareledger-bench http`, a batch of
-- about five appends took 6.4 ms, of which planning was about half; with
-- generic plans, 3.5 ms (docs/BENCHMARKS.md). Every statement in them
-- looks rows up by key (a stream, an event id, a tag from a position), so
-- a generic plan is the plan a custom one would choose.
ALTER FUNCTION sl_append(text[], bigint[], integer[], integer[], uuid[], text[], integer[],
                         jsonb[], jsonb[], integer[], text[], text[], text[], bigint[])
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION sl_append_batch(integer[], text[], bigint[], integer[], integer[], uuid[], text[],
                               integer[], jsonb[], jsonb[], integer[], text[], integer[], text[],
                               text[], bigint[])
    SET plan_cache_mode = force_generic_plan;
