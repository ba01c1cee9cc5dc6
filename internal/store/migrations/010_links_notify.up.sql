-- Every change of a links row tells the gateways' token caches to drop the
-- link (gateway/tokencache.go). The payload is "<tenant>/<link>": ids only,
-- never a secret. Notifications are sent at commit, in commit order.
CREATE FUNCTION tokenwarden_link_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tokenwarden_links', OLD.tenant_id || '/' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER links_notify_change
    AFTER UPDATE OR DELETE ON links
    FOR EACH ROW EXECUTE FUNCTION tokenwarden_link_changed();
