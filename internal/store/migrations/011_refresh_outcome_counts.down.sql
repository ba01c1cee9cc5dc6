DROP TRIGGER link_events_count_refresh_outcome ON link_events;
DROP FUNCTION tokenwarden_count_refresh_outcome();
DROP FUNCTION tokenwarden_refresh_outcome(text);
DROP TABLE refresh_outcome_counts;
