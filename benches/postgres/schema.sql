-- The double-entry payment of covoit, in PostgreSQL, for benches/postgres/run.sh.
-- One payment = one entry row, two postings, two balance updates and a floor
-- check, all inside the stored function pay().

CREATE TABLE accounts (
    id      int PRIMARY KEY,
    balance numeric(20,2) NOT NULL,
    floor   numeric(20,2) NOT NULL DEFAULT 0
);

CREATE TABLE entries (
    id   bigserial PRIMARY KEY,
    at   timestamptz NOT NULL DEFAULT now(),
    memo text
);

CREATE TABLE postings (
    entry_id bigint        NOT NULL REFERENCES entries,
    account  int           NOT NULL REFERENCES accounts,
    amount   numeric(20,2) NOT NULL
);

-- Moves `amount` from payer to payee and returns the new entry's id.
-- A payment that would take the payer below its floor is refused by returning
-- NULL, having written nothing (the floor check is the first write, and it
-- matches no row). Malformed calls (same account twice, amount <= 0, unknown
-- account) raise an exception, which rolls the whole call back.
CREATE FUNCTION pay(payer int, payee int, amount numeric) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
BEGIN
    amount := round(amount, 2);  -- same scale as the columns, so sums stay exact
    IF payer = payee OR amount <= 0 THEN
        RAISE EXCEPTION 'bad payment % -> % of %', payer, payee, amount;
    END IF;

    -- Lock both accounts, lower id first: two payments between the same pair,
    -- in opposite directions, then queue up instead of deadlocking.
    PERFORM 1 FROM accounts WHERE id = least(payer, payee) FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown account %', least(payer, payee); END IF;
    PERFORM 1 FROM accounts WHERE id = greatest(payer, payee) FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown account %', greatest(payer, payee); END IF;

    -- Floor check and debit in one statement: no row matches if it would overdraw.
    UPDATE accounts SET balance = balance - amount
     WHERE id = payer AND balance - amount >= floor;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE accounts SET balance = balance + amount WHERE id = payee;

    INSERT INTO entries (memo) VALUES ('pay') RETURNING id INTO entry;
    INSERT INTO postings (entry_id, account, amount)
    VALUES (entry, payer, -amount), (entry, payee, amount);
    RETURN entry;
END
$$;

-- 1000 accounts, as covoit's load generator uses, each holding 1,000,000.00.
INSERT INTO accounts (id, balance) SELECT g, 1000000.00 FROM generate_series(1, 1000) g;
VACUUM ANALYZE accounts;
