CREATE OR REPLACE FUNCTION tokenwarden_link_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tokenwarden_links', OLD.tenant_id || '/' || OLD.id);
    RETURN NULL;
END
$$;
