-- Kubernetes-style escalation rule for the admin API: handing out permissions the
-- caller does not hold itself needs this permission, held only by `admin`.
INSERT INTO permissions (name, audience, description, created_at) VALUES
    ('oxidp:roles:escalate', NULL, 'Grant or assign permissions the caller does not hold itself', 0);
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'oxidp:roles:escalate');
-- A pending /authorize request belongs to the browser that started it: the
-- SHA-256 of that browser's binding cookie (NULL rows, from before, bind to none).
ALTER TABLE authorization_requests ADD COLUMN browser_hash TEXT;
