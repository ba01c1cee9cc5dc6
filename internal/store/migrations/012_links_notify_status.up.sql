-- A links row whose status changes also says its new status, so that the
-- gateways stop serving a link's token the moment its suspension, failure
-- or revoke commits (gateway/linkstatus.go), not at their next poll. The
-- payload is "status:<status>:<tenant>/<link>": ids and a status, never a
-- secret. It is sent before the plain "<tenant>/<link>" payload of 010,
-- which gateways of every version read; an older gateway ignores the new
-- payload (it names no link it caches).
CREATE OR REPLACE FUNCTION tokenwarden_link_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify('tokenwarden_links', 'status:' || NEW.status || ':' || NEW.tenant_id || '/' || NEW.id);
    END IF;
    PERFORM pg_notify('tokenwarden_links', OLD.tenant_id || '/' || OLD.id);
    RETURN NULL;
END
$$;
