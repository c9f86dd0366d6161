-- Gifts, orders and exactly-once payments.

ALTER TABLE gifts
    ADD COLUMN currency CHAR(3) NOT NULL DEFAULT 'EUR',
    ADD COLUMN active   BOOLEAN NOT NULL DEFAULT TRUE;

ALTER TABLE orders
    ADD COLUMN currency    CHAR(3)     NOT NULL DEFAULT 'EUR',
    ADD COLUMN payment_ref VARCHAR(64) NULL,
    ADD COLUMN updated_at  BIGINT      NOT NULL DEFAULT 0,
    ADD UNIQUE KEY orders_payment_ref (payment_ref),
    ADD KEY orders_status (status, created_at);

-- The first answer to a request with an Idempotency-Key, replayed for the same key.
CREATE TABLE idempotency_keys (
    user_id      BIGINT       NOT NULL,
    -- Binary: keys are compared byte for byte (the table's collation ignores case).
    idem_key     VARBINARY(255) NOT NULL,
    request_hash CHAR(64)     NOT NULL,
    status       INT          NOT NULL,
    body         TEXT         NOT NULL,
    created_at   BIGINT       NOT NULL,
    PRIMARY KEY (user_id, idem_key),
    KEY idempotency_keys_created_at (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Every authentic provider event, once: a redelivery finds its row and changes nothing.
CREATE TABLE payment_inbox (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    provider    VARCHAR(32)  NOT NULL,
    -- Binary: `evt_A` and `evt_a` are different events.
    event_id    VARBINARY(255) NOT NULL,
    event_type  VARCHAR(64)  NOT NULL,
    payment_ref VARCHAR(64)  NOT NULL,
    order_id    BIGINT       NULL,
    amount      BIGINT       NOT NULL,
    currency    VARCHAR(8)   NOT NULL,
    outcome     VARCHAR(16)  NOT NULL,
    reason      VARCHAR(64)  NULL,
    received_at BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY payment_inbox_event (provider, event_id),
    KEY payment_inbox_order (order_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Callbacks refused before they could be trusted (signature, format): not in the inbox, so a
-- forged event id cannot shadow the real event.
CREATE TABLE payment_refusals (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    reason      VARCHAR(64)  NOT NULL,
    event_id    VARCHAR(255) NULL,
    received_at BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY payment_refusals_event (event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Gift events written with the payment, relayed to the bus afterwards.
CREATE TABLE gift_outbox (
    id         BIGINT NOT NULL AUTO_INCREMENT,
    order_id   BIGINT NOT NULL,
    room_id    BIGINT NOT NULL,
    payload    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    relayed_at BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY gift_outbox_order (order_id),
    KEY gift_outbox_pending (relayed_at, id),
    CONSTRAINT gift_outbox_order_fk FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
