-- Gifts, orders and exactly-once payments.

ALTER TABLE gifts ADD COLUMN currency TEXT NOT NULL DEFAULT 'EUR';
ALTER TABLE gifts ADD COLUMN active INTEGER NOT NULL DEFAULT 1;

ALTER TABLE orders ADD COLUMN currency TEXT NOT NULL DEFAULT 'EUR';
ALTER TABLE orders ADD COLUMN payment_ref TEXT;
ALTER TABLE orders ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX orders_payment_ref ON orders (payment_ref);
CREATE INDEX orders_status ON orders (status, created_at);

-- The first answer to a request with an Idempotency-Key, replayed for the same key.
CREATE TABLE idempotency_keys (
    user_id      INTEGER NOT NULL,
    idem_key     TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Every authentic provider event, once: a redelivery finds its row and changes nothing.
CREATE TABLE payment_inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider    TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    payment_ref TEXT    NOT NULL,
    order_id    INTEGER,
    amount      INTEGER NOT NULL,
    currency    TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    received_at INTEGER NOT NULL,
    UNIQUE (provider, event_id)
);
CREATE INDEX payment_inbox_order ON payment_inbox (order_id);

-- Callbacks refused before they could be trusted (signature, format): not in the inbox, so a
-- forged event id cannot shadow the real event.
CREATE TABLE payment_refusals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    reason      TEXT    NOT NULL,
    event_id    TEXT,
    received_at INTEGER NOT NULL
);
CREATE INDEX payment_refusals_event ON payment_refusals (event_id);

-- Gift events written with the payment, relayed to the bus afterwards.
CREATE TABLE gift_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    room_id    INTEGER NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    relayed_at INTEGER
);
CREATE INDEX gift_outbox_pending ON gift_outbox (relayed_at, id);
