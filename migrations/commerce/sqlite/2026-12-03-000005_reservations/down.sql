DROP TABLE outbox;
DROP TABLE reservations;
