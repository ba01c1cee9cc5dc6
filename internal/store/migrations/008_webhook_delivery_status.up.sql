-- How the tenant's latest webhook delivery attempt ended, so that a tenant
-- can see why nothing arrives (GET /v1/webhook). Written best-effort by the
-- delivery activity after each attempt; a plain reason built from wire
-- facts (status, host, refusal), never a secret and never a response body.
-- The columns describe the webhook's current URL: replacing the URL clears
-- them.

ALTER TABLE webhooks
    ADD COLUMN last_delivery_at         timestamptz,
    ADD COLUMN last_delivery_event      text        NOT NULL DEFAULT '' CHECK (char_length(last_delivery_event) <= 100),
    ADD COLUMN last_delivery_event_id   text        NOT NULL DEFAULT '' CHECK (char_length(last_delivery_event_id) <= 100),
    ADD COLUMN last_delivery_ok         boolean,
    ADD COLUMN last_delivery_retrying   boolean     NOT NULL DEFAULT false,
    ADD COLUMN last_delivery_problem    text        NOT NULL DEFAULT '' CHECK (char_length(last_delivery_problem) <= 300),
    ADD COLUMN last_success_at          timestamptz,
    -- Attempts that did not deliver since the last one that did (each
    -- retry counts).
    ADD COLUMN failures_since_success   integer     NOT NULL DEFAULT 0 CHECK (failures_since_success >= 0);
