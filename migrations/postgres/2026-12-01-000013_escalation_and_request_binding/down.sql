ALTER TABLE authorization_requests DROP COLUMN browser_hash;
DELETE FROM role_permissions WHERE permission = 'oxidp:roles:escalate';
DELETE FROM permissions WHERE name = 'oxidp:roles:escalate';
