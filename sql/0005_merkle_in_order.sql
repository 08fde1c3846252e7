-- The tree's stored hashes are keyed by the order they are stored in (every leaf's
-- hash, then the hashes of the subtrees it completes: `merkle::stored_index`), not
-- by (level, node_index). Each commit's new hashes then take consecutive keys at the
-- end of one table, one or two pages, where the old key spread them over a page per
-- level of the tree.
--
-- The hashes are not copied: the service rebuilds them from the leaves at its next
-- start (`store::load_tree`), checks the root against the stored checkpoint, and
-- signs a fresh one.

DROP TABLE merkle_nodes;

CREATE TABLE merkle_hashes (
    stored_index INTEGER PRIMARY KEY CHECK (stored_index >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);
