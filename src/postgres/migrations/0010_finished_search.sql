-- `finished_by_key` and `finished_by_object` (expressions on the settled job's JSON) were used by
-- no plan: the dashboard's search by record ORs them with `external_id`, which no index covers,
-- so it walked `finished_by_id` backwards through every settled job (0.38 s over 1,000,000 for
-- a record with four). The search now reads the newest jobs below its cursor a window at a
-- time, as the embedded store does, and every delivered order was computing both expressions
-- and writing both entries for nothing.
DROP INDEX IF EXISTS finished_by_key;
DROP INDEX IF EXISTS finished_by_object;
