-- The Merkle tree over the leaves (RFC 6962) and the latest signed checkpoint.
--
-- Each row is the hash of one perfect subtree, written once when its last leaf
-- arrives: node (level, node_index) covers leaves node_index * 2^level up to
-- (node_index + 1) * 2^level. Level 0 holds the leaf hashes. Proofs are built from
-- these rows alone; `covoit audit` recomputes every hash from the leaves.
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    node_index INTEGER NOT NULL CHECK (node_index >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, node_index)
) WITHOUT ROWID;

-- The latest checkpoint (a C2SP signed note over the tree of all `size` leaves),
-- written in the same transaction as the leaves it covers.
ALTER TABLE ledger ADD COLUMN checkpoint TEXT;
