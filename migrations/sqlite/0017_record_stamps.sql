-- SQLite only: the PostgreSQL store keeps no copy of records in memory.

-- A customer's record stamp moves on with every change to a row of its
-- record (the customer row, its values and their purposes, its consent
-- events and objections), whoever makes it: the server, a command, another
-- process, a statement typed by hand. A profile read answered from the
-- server's in-memory copy of a record's rows commits its audit event only
-- while the stamp is still the one the copy was read at; otherwise the
-- read is made again from the database.
ALTER TABLE customers ADD COLUMN record_stamp INTEGER NOT NULL DEFAULT 0;

-- Any change to the customer row other than the stamp itself (which is
-- what the triggers below change: they do not fire this one again).
CREATE TRIGGER customers_record_stamp AFTER UPDATE ON customers
WHEN NEW.record_stamp = OLD.record_stamp
BEGIN
    UPDATE customers SET record_stamp = OLD.record_stamp + 1 WHERE id = NEW.id;
END;

CREATE TRIGGER field_values_record_stamp_insert AFTER INSERT ON field_values
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER field_values_record_stamp_update AFTER UPDATE ON field_values
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER field_values_record_stamp_delete AFTER DELETE ON field_values
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = OLD.customer_id;
END;

CREATE TRIGGER value_purposes_record_stamp_insert AFTER INSERT ON value_purposes
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER value_purposes_record_stamp_update AFTER UPDATE ON value_purposes
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER value_purposes_record_stamp_delete AFTER DELETE ON value_purposes
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = OLD.customer_id;
END;

CREATE TRIGGER consent_events_record_stamp_insert AFTER INSERT ON consent_events
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER consent_events_record_stamp_update AFTER UPDATE ON consent_events
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER consent_events_record_stamp_delete AFTER DELETE ON consent_events
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = OLD.customer_id;
END;

CREATE TRIGGER objections_record_stamp_insert AFTER INSERT ON objections
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER objections_record_stamp_update AFTER UPDATE ON objections
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = NEW.customer_id;
END;

CREATE TRIGGER objections_record_stamp_delete AFTER DELETE ON objections
BEGIN
    UPDATE customers SET record_stamp = record_stamp + 1 WHERE id = OLD.customer_id;
END;
