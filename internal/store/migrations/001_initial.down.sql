DROP TABLE oauth_states;
DROP TABLE link_events;
DROP TABLE links;
DROP TABLE api_keys;
DROP TABLE tenants;
