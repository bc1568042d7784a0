-- Webhook signing secrets are stored encrypted (issue #13): XChaCha20-Poly1305 under a key
-- from WEBHOOK_SECRET_KEYS, sealed to the webhook's id, as `v1:<key id>:<base64>`. SQL has
-- no key, so this migration cannot encrypt: `smsgate-api migrate` (and every API start)
-- seals the rows still in plain text right after it, and re-seals rows under older keys.

COMMENT ON COLUMN webhooks.secret IS
    'Encrypted signing secret, v1:<key id>:<base64 nonce||ciphertext>; see shared/src/secret_box.rs';

-- Nothing may write a secret in plain text again: every new or changed value must be in the
-- sealed form. NOT VALID because the rows from before this migration are still plain text
-- until the API seals them (it checks new and updated rows only); a later migration can
-- VALIDATE it once every installation has run an API of this version.
ALTER TABLE webhooks
    ADD CONSTRAINT webhooks_secret_sealed CHECK (secret ~ '^v1:[A-Za-z0-9_-]{1,32}:[A-Za-z0-9+/=]+$')
    NOT VALID;
