DROP TRIGGER links_notify_change ON links;
DROP FUNCTION tokenwarden_link_changed();
