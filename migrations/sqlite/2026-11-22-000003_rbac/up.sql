-- RBAC (roles, permissions, hierarchy, static separation of duty) and the audit log.
-- Roles and permissions are identified by name. A permission belongs to one
-- audience (resource server); NULL means oxidp itself (the admin API).

CREATE TABLE roles (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE permissions (
    name TEXT PRIMARY KEY NOT NULL,
    audience TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE role_permissions (
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    permission TEXT NOT NULL REFERENCES permissions(name) ON DELETE CASCADE,
    PRIMARY KEY (role, permission)
);
CREATE INDEX role_permissions_permission ON role_permissions(permission);

-- A role inherits the permissions of its parents.
CREATE TABLE role_parents (
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    parent TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    PRIMARY KEY (role, parent)
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, role)
);
CREATE INDEX user_roles_role ON user_roles(role);

-- Service accounts: roles held by clients, carried by client_credentials tokens.
CREATE TABLE client_roles (
    client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, role)
);
CREATE INDEX client_roles_role ON client_roles(role);

-- Static separation of duty: no subject may be authorized for two roles of one set.
CREATE TABLE exclusive_role_sets (
    name TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE exclusive_role_members (
    set_name TEXT NOT NULL REFERENCES exclusive_role_sets(name) ON DELETE CASCADE,
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    PRIMARY KEY (set_name, role)
);

-- Who did what, when.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    ip TEXT
);
CREATE INDEX audit_events_at ON audit_events(at);

-- The RFC 8707 resource a code and its grant were issued for.
ALTER TABLE authorization_codes ADD COLUMN resource TEXT;
ALTER TABLE grants ADD COLUMN resource TEXT;

-- Bumped by every RBAC change inside its transaction: serializes concurrent changes.
INSERT INTO server_settings (key, value) VALUES ('rbac_version', '0');

-- The built-in administrator role and the permissions of the admin API.
INSERT INTO roles (name, description, created_at) VALUES ('admin', 'Administers oxidp', 0);
INSERT INTO permissions (name, audience, description, created_at) VALUES
    ('oxidp:users:read', NULL, 'Read users', 0),
    ('oxidp:users:write', NULL, 'Create, change and disable users', 0),
    ('oxidp:clients:read', NULL, 'Read clients', 0),
    ('oxidp:clients:write', NULL, 'Register, change and delete clients', 0),
    ('oxidp:roles:read', NULL, 'Read roles, permissions and assignments', 0),
    ('oxidp:roles:write', NULL, 'Change roles, permissions and assignments', 0),
    ('oxidp:sessions:read', NULL, 'Read sign-in sessions', 0),
    ('oxidp:sessions:write', NULL, 'End sign-in sessions', 0),
    ('oxidp:audit:read', NULL, 'Read the audit log', 0);
INSERT INTO role_permissions (role, permission)
    SELECT 'admin', name FROM permissions WHERE name LIKE 'oxidp:%';
