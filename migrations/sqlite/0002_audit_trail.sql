-- The auditor's query filters by actor and by action; both walk the chain in
-- sequence order.
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
