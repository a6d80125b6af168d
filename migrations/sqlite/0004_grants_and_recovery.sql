-- Issue 3, second part. Invitations name the account they create; sessions remember when the
-- password was last re-entered (step-up, for granting cases); the TOTP secret gets a second copy
-- under the recovery key, so that a reviewer who lost their password can still prove the second
-- factor when the recovery code replaces the password.

ALTER TABLE enrolments ADD COLUMN username TEXT;
ALTER TABLE sessions ADD COLUMN stepped_up_at INTEGER;
ALTER TABLE reviewer_secrets ADD COLUMN recovery_sealed_totp BLOB;

