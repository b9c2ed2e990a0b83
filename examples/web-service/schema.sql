-- The table of the test binary's slow_add_note (the tests create it in their throwaway cluster).
CREATE TABLE IF NOT EXISTS web_notes (
    id      bigserial PRIMARY KEY,
    user_id integer NOT NULL,
    body    text NOT NULL
);
