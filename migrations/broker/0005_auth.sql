-- Token authentication (ferry-broker --auth). A principal is a name and the SHA-256 of its
-- bearer token (the token itself is shown once, when it is made, and never stored). Grants say
-- what a principal may do:
--   produce  on topic T  : Produce to T (and transactions' half messages)
--            on group P  : act as producer group P (transactions, answering its back-checks)
--   consume  on topic T  : Consume from T          on group G: consume, commit, extend as G
--   admin    on topic T / group G: manage it (and everything produce/consume allow on it)
--            on cluster  : everything
-- resource_name '*' matches every topic (or group).
CREATE TABLE principals (
  name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,128}$'),
  token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE grants (
  principal     text NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
  permission    text NOT NULL CHECK (permission IN ('produce', 'consume', 'admin')),
  resource_type text NOT NULL CHECK (resource_type IN ('topic', 'group', 'cluster')),
  resource_name text NOT NULL CHECK (resource_name ~ '^([A-Za-z0-9._-]{1,128}|\*)$'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (principal, permission, resource_type, resource_name)
);
