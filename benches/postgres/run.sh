#!/usr/bin/env bash
# PostgreSQL side of the payment comparison in docs/performance.md.
#
# Runs covoit's double-entry payment as a stored function (schema.sql) in a
# throwaway PostgreSQL cluster with durable commits (fsync, synchronous_commit,
# full_page_writes on), driven by pgbench (payment.sql) at 1, 16 and 64 clients,
# and prints payments/s with p50 / p99 latency, then checks the ledger adds up.
#
#   bash benches/postgres/run.sh            # as root; 4 runs x 15 s, ~65 s in all
#   SECONDS_PER_RUN=60 CLIENTS="1 16" ASYNC_REFERENCE=0 bash benches/postgres/run.sh
#
# Talks to 127.0.0.1 only; the cluster and its folder are removed at exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
secs=${SECONDS_PER_RUN:-15}
clients=${CLIENTS:-1 16 64}
async_reference=${ASYNC_REFERENCE:-1}  # also one client with synchronous_commit=off

# Debian's PostgreSQL (binaries in /usr/lib/postgresql/<version>/bin), installed if missing.
find_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bindir=$(find_bindir || true)
if [[ -z $bindir || ! -x $bindir/initdb || ! -x $bindir/pgbench ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bindir=$(find_bindir)
fi

# PostgreSQL refuses to run as root: every server-side tool runs as `postgres`.
as_pg() { runuser -u postgres -- "$@"; }

# A fresh cluster in a temporary folder, stopped and removed whatever happens.
dir=$(mktemp -d)
chown postgres: "$dir"
cleanup() {
  as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port on 127.0.0.1: the first one, from a random start, that nobody answers on.
port=$((50000 + RANDOM % 10000))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done

as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
shared_buffers = 256MB
CONF
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null

sql() { as_pg "$bindir/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -d postgres "$@"; }
sql <"$here/schema.sql"
cp "$here/payment.sql" "$dir/payment.sql"

sql -c 'SELECT version()'
echo "fsync=$(sql -c 'SHOW fsync') synchronous_commit=$(sql -c 'SHOW synchronous_commit')" \
     "full_page_writes=$(sql -c 'SHOW full_page_writes') shared_buffers=$(sql -c 'SHOW shared_buffers')" \
     "wal_sync_method=$(sql -c 'SHOW wal_sync_method'); $secs s per run, pgbench -j 2"

# One pgbench run: $1 = label, $2 = clients, further arguments go before pgbench
# (e.g. `env PGOPTIONS=...`). Prints: label, clients, payments/s, p50 ms, p99 ms.
processed=0
bench() {
  local label=$1 c=$2; shift 2
  local prefix="$dir/lat-$label-$c"
  sql -c 'CHECKPOINT'  # every run starts with a clean WAL state
  as_pg "$@" "$bindir/pgbench" -n -M prepared -f "$dir/payment.sql" -c "$c" -j 2 -T "$secs" \
    -h 127.0.0.1 -p "$port" -l --log-prefix="$prefix" postgres >"$prefix.out" 2>&1 \
    || { cat "$prefix.out"; exit 1; }
  local tps n
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$prefix.out")
  n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$prefix.out")
  processed=$((processed + n))
  # Column 3 of pgbench's per-transaction log is the latency in microseconds;
  # percentiles by nearest rank.
  cat "$prefix".[0-9]* | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n | awk -v l="$label" -v c="$c" -v t="$tps" '
    function rank(p,  i) { i = int(p * NR); if (i < p * NR) i++; return v[i < 1 ? 1 : i] }
    { v[NR] = $1 }
    END { printf "%-22s %7d %12.0f %9.2f %9.2f\n", l, c, t, rank(0.50) / 1000, rank(0.99) / 1000 }'
}

printf "%-22s %7s %12s %9s %9s\n" run clients payments/s "p50 ms" "p99 ms"
for c in $clients; do bench synchronous_commit=on "$c"; done
if [[ $async_reference == 1 ]]; then
  bench synchronous_commit=off 1 env PGOPTIONS='-c synchronous_commit=off'
fi

# The ledger must add up: money neither created nor lost, two postings per entry,
# every entry balanced, every balance equal to its opening plus its postings, and
# one entry per payment pgbench counted (none refused at these balances).
check=$(sql <<SQL
SELECT concat_ws(' ',
  (SELECT sum(balance) FROM accounts) = 1000 * 1000000.00,
  (SELECT count(*) FROM postings) = 2 * (SELECT count(*) FROM entries),
  NOT EXISTS (SELECT FROM postings GROUP BY entry_id HAVING sum(amount) <> 0),
  NOT EXISTS (SELECT FROM accounts a
              LEFT JOIN (SELECT account, sum(amount) AS s FROM postings GROUP BY account) p
                     ON p.account = a.id
              WHERE a.balance <> 1000000.00 + coalesce(p.s, 0)),
  (SELECT count(*) FROM entries) = $processed,
  (SELECT count(*) FROM entries), (SELECT count(*) FROM postings));
SQL
)
read -r total pairs balanced replay counted entries postings <<<"$check"
echo "check: total unchanged=$total, postings = 2 x entries=$pairs ($postings = 2 x $entries)," \
     "entries balanced=$balanced, balances = postings=$replay, entries = payments run=$counted ($processed)"
[[ "$total $pairs $balanced $replay $counted" == "t t t t t" ]] || { echo "check FAILED" >&2; exit 1; }
echo "took ${SECONDS}s"
