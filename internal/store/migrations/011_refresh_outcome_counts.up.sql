-- Refresh outcomes by provider, counted as the audit trail grows, for the
-- gateway's tokenwarden_refreshes_total. Counting them from link_events on
-- every stats poll (a join over the whole audit trail, every 30 s, on
-- every gateway) grows with the trail without end: a year of 100 000
-- links is hundreds of millions of events.
--
-- Each (provider, outcome) is spread over 16 rows by link, so concurrent
-- refreshes of one provider do not queue on one row lock; readers sum.
CREATE TABLE refresh_outcome_counts (
    provider text   NOT NULL,
    outcome  text   NOT NULL,
    shard    int    NOT NULL,
    count    bigint NOT NULL,
    PRIMARY KEY (provider, outcome, shard)
);

-- The event types the link workflow records when a refresh ends: see
-- store.RefreshCounts.
CREATE FUNCTION tokenwarden_refresh_outcome(event_type text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE event_type
        WHEN 'refreshed'       THEN 'ok'
        WHEN 'recovered'       THEN 'ok'
        WHEN 'reenrolled'      THEN 'ok'
        WHEN 'refresh_failed'  THEN 'failed'
        WHEN 'failed'          THEN 'failed'
        WHEN 'reauth_required' THEN 'reauth_required'
    END
$$;

-- Fires for inserted rows only: a retried record (ON CONFLICT DO NOTHING)
-- counts once.
CREATE FUNCTION tokenwarden_count_refresh_outcome() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o text := tokenwarden_refresh_outcome(NEW.type);
BEGIN
    IF o IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO refresh_outcome_counts (provider, outcome, shard, count)
    SELECT l.provider, o, abs(hashtext(NEW.link_id)) % 16, 1
    FROM links l WHERE l.tenant_id = NEW.tenant_id AND l.id = NEW.link_id
    ON CONFLICT (provider, outcome, shard) DO UPDATE SET count = refresh_outcome_counts.count + 1;
    RETURN NULL;
END
$$;

-- The trigger first, then the count of what is there: the trigger's lock
-- holds inserts back until this migration commits, so no event is
-- counted twice or missed.
CREATE TRIGGER link_events_count_refresh_outcome
    AFTER INSERT ON link_events
    FOR EACH ROW EXECUTE FUNCTION tokenwarden_count_refresh_outcome();

INSERT INTO refresh_outcome_counts (provider, outcome, shard, count)
SELECT l.provider, tokenwarden_refresh_outcome(e.type), abs(hashtext(e.link_id)) % 16, count(*)
FROM link_events e
JOIN links l ON l.tenant_id = e.tenant_id AND l.id = e.link_id
WHERE tokenwarden_refresh_outcome(e.type) IS NOT NULL
GROUP BY 1, 2, 3;
