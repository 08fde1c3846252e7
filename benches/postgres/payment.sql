-- pgbench script: one random payment of 0.01..1.00 between two distinct accounts
-- out of 1000 (payee is payer shifted by 1..999, so never equal to payer).
\set payer random(1, 1000)
\set payee 1 + (:payer + random(0, 998)) % 1000
\set cents random(1, 100)
SELECT pay(:payer, :payee, :cents / 100.0);
