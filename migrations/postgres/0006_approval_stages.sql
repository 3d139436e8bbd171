-- Ordered approval stages (`@stages`): the plan a request escalated with (a JSON array of
-- {name, required}; NULL for a request of one `default` stage), and the stage of each answer.
ALTER TABLE access_requests ADD COLUMN stages TEXT;
ALTER TABLE approvals ADD COLUMN stage TEXT NOT NULL DEFAULT 'default';
