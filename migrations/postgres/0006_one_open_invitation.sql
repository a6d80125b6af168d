-- One open invitation per username: a new invitation replaces an earlier one that nobody has
-- redeemed yet, so that an invitation is single-use in fact and a lost one can be withdrawn by
-- inviting again. Duplicates made before this migration keep only their latest.
DELETE FROM enrolments
WHERE username IS NOT NULL AND spent = FALSE AND reviewer_id IS NULL
  AND EXISTS (
      SELECT 1 FROM enrolments AS later
      WHERE later.username = enrolments.username AND later.spent = FALSE
        AND later.reviewer_id IS NULL
        AND (later.expires_at > enrolments.expires_at
             OR (later.expires_at = enrolments.expires_at
                 AND later.token_hash > enrolments.token_hash)));

CREATE UNIQUE INDEX enrolments_one_open_invitation ON enrolments (username)
    WHERE username IS NOT NULL AND spent = FALSE AND reviewer_id IS NULL;
