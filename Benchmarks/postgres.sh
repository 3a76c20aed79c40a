#!/usr/bin/env bash
# Coffer against pgBackRest and pg_basebackup on the same PostgreSQL 15 cluster, in one run.
#   full backup, a ~1% change, second backup (coffer: full again, deduplicated;
#   pgBackRest: incr; pg_basebackup: full again), restore of the second backup (pg_basebackup:
#   a plain `cp -a`), every restore started and checked against the source, and the latency
#   of pushing ~20 WAL segments one by one (coffer wal-push against pgbackrest archive-push).
# Usage (as root): Benchmarks/postgres.sh
#   SCALE=100        pgbench scale (plus a table of random base64 text of about the same size)
#   FRESH=1          rebuild the loaded cluster even if one of this scale exists
#   CHANGE=contiguous|scattered   the ~1% change: the first 1% of rows (default) or every
#                    100th row (touches most pages)
#   WAL_SEGMENTS=20  segments for the WAL push latency
#   PGBACKREST_CIPHER=1  encrypt the pgBackRest repository too (aes-256-cbc; coffer always encrypts)
#   COFFER_BIN=path  use this coffer (and the coffer-postgres beside it) instead of building
#                    a release (scripts/build-release)
#   BLOCK_SIZE=bytes the source's block_size for relation files (default: the plugin's)
#   RESTORE_CACHE=cold|warm  cold (default): the page cache is dropped before each restore, so
#                    every tool reads its repository from disk as a real restore does; warm:
#                    whatever the backups left in it (pgBackRest's repository, written through
#                    the cache, is all there; coffer's packs, written O_DIRECT, are not)
#   FULL_ROUNDS=3    the full backups are repeated this many times, the tools taking turns, and
#                    the median is reported (the shared CPU's pace moves by a third between
#                    runs); rounds after the first run after the restores, on the changed
#                    cluster, into a scratch vault, pgBackRest's repository and a scratch directory
#   RESTORE_ROUNDS=3 the restores are repeated this many times, the tools taking turns (each
#                    round starting with the next tool), and the median is reported (this
#                    machine's disk moves by half from one minute to the next); each round also
#                    times the disk floor (below the table)
# Everything lives in bench-work/postgres (the loaded cluster is kept there as a template).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ "$(id -u)" -eq 0 ] || { echo "postgres.sh: run as root (PostgreSQL runs as the postgres user)" >&2; exit 1; }
SCALE=${SCALE:-100}
FRESH=${FRESH:-0}
COFFER_LEVEL=${COFFER_LEVEL:-1}   # the source's compression_level; pgBackRest runs at zst level 1
BLOCK_SIZE=${BLOCK_SIZE:-}
CHANGE=${CHANGE:-contiguous}
WAL_SEGMENTS=${WAL_SEGMENTS:-20}
PGBACKREST_CIPHER=${PGBACKREST_CIPHER:-0}
RESTORE_CACHE=${RESTORE_CACHE:-cold}
RESTORE_ROUNDS=${RESTORE_ROUNDS:-3}
FULL_ROUNDS=${FULL_ROUNDS:-3}
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || { echo "SCALE must be a positive integer" >&2; exit 2; }
[[ $CHANGE == contiguous || $CHANGE == scattered ]] || { echo "CHANGE must be contiguous or scattered" >&2; exit 2; }
[[ $RESTORE_CACHE == cold || $RESTORE_CACHE == warm ]] || { echo "RESTORE_CACHE must be cold or warm" >&2; exit 2; }
[[ $RESTORE_ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "RESTORE_ROUNDS must be a positive integer" >&2; exit 2; }
[[ $FULL_ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "FULL_ROUNDS must be a positive integer" >&2; exit 2; }
export LC_ALL=C

work=$root/bench-work/postgres
pgbin=/usr/lib/postgresql/15/bin
sock=$work/sock
logs=$work/logs

# --- prerequisites and build ---------------------------------------------------------------
scripts/bootstrap
command -v pgbackrest >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null; }
if [ -n "${COFFER_BIN:-}" ]; then
  coffer=$COFFER_BIN
else
  # What a release installs (scripts/build-release): Swift linked in, as pgBackRest is a C
  # program that loads no runtime of that size.
  mkdir -p "$root/bench-work"
  bin=$(scripts/build-release 2>"$root/bench-work/postgres-build.log") \
    || { echo "postgres.sh: scripts/build-release failed:" >&2; tail -20 "$root/bench-work/postgres-build.log" >&2; exit 1; }
  coffer=$bin/coffer
fi
[ -x "$coffer" ] && [ -x "$(dirname "$coffer")/coffer-postgres" ] \
  || { echo "postgres.sh: $coffer or coffer-postgres beside it is missing" >&2; exit 1; }

mkdir -p "$work"
chown postgres: "$work"
# The run uses a copy of the two binaries: a rebuild during the run cannot change them.
rm -rf "$work/bin"; mkdir -p "$work/bin"
cp "$coffer" "$(dirname "$coffer")/coffer-postgres" "$work/bin/"
chmod 755 "$work/bin" "$work/bin/coffer" "$work/bin/coffer-postgres"
coffer=$work/bin/coffer
as_pg() { runuser -u postgres -- "$@"; }

# --- helpers -------------------------------------------------------------------------------
running=()   # data directories of servers this run started
cleanup() {
  local d
  for d in "${running[@]}"; do
    [ -f "$d/postmaster.pid" ] && as_pg $pgbin/pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
trap 'echo "postgres.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

port_free() {   # nothing listens on TCP and no socket of ours uses it
  local p=$1
  ! (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && [ ! -e "$sock/.s.PGSQL.$p" ] && [ ! -e "$sock/.s.PGSQL.$p.lock" ]
}
free_port() { local p=$1; while ! port_free $p; do p=$((p + 1)); done; echo $p; }

pg_start() {   # DATADIR PORT LOGNAME [extra -c settings...]
  local d=$1 p=$2 log=$logs/$3.log; shift 3
  running+=("$d")
  as_pg $pgbin/pg_ctl -D "$d" -l "$log" -w -t 600 \
    -o "-p $p -k $sock -c listen_addresses='' $*" start >/dev/null \
    || { echo "postgres.sh: server in $d did not start:" >&2; tail -20 "$log" >&2; return 1; }
}
pg_stop() { as_pg $pgbin/pg_ctl -D "$1" -m fast -w -t 600 stop >/dev/null; }
sql_at() { as_pg $pgbin/psql -h "$sock" -p "$1" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
sql() { sql_at "$port" "$1"; }
set_archive_command() {   # COMMAND: ALTER SYSTEM + reload, then wait until it is in force
  sql "ALTER SYSTEM SET archive_command = '$1'" >/dev/null
  sql "SELECT pg_reload_conf()" >/dev/null
  local i
  for i in $(seq 50); do [ "$(sql "SHOW archive_command")" = "$1" ] && return 0; sleep 0.1; done
  echo "postgres.sh: archive_command did not change to $1" >&2; return 1
}

du_b() { du -sb "$@" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# timed VAR LOGNAME command...: runs the command (output to logs/LOGNAME.log) after a sync,
# sets VAR to the seconds it took and VAR_cpu to the CPU seconds (user + system) of the
# command and the processes it waited for; a failure prints the log's tail and stops the run.
# CPU seconds vary far less than wall time on a shared machine, and show a tool that leaves
# a core idle.
timed() {
  local var=$1 log=$logs/$2.log cpu=$logs/$2.cpu; shift 2
  sync
  local t0=$EPOCHREALTIME
  local TIMEFORMAT='%U %S'   # bash's time: the CPU of the children it waited for, functions included
  if ! { time "$@" >"$log" 2>&1; } 2>"$cpu"; then
    echo "postgres.sh: FAILED: $*" >&2; echo "--- $log:" >&2; tail -30 "$log" >&2
    exit 1
  fi
  printf -v "$var" '%s' "$(secs_since "$t0")"
  printf -v "${var}_cpu" '%s' "$(awk 'END { printf "%.2f", $1 + $2 }' "$cpu")"
}

# --- the loaded cluster (kept as a template, copied for each run) --------------------------
template=$work/template
recipe="scale $SCALE, loader 3"   # what template.done holds; change "loader N" when load_template changes
accounts=$((SCALE * 100000))
random_rows=$((SCALE * 7300))    # 4 rows of ~2 KiB a page, ~15 MiB per scale unit like pgbench's tables
# 1976 characters of base64 of random bytes (no line breaks): 6 bits of entropy per byte, so
# zstd gets ~1.35 at best (pgcrypto's gen_random_bytes gives at most 1024 bytes a call).
random_payload="translate(encode(gen_random_bytes(741) || gen_random_bytes(741), 'base64'), E'\\n', '')"

load_template() {
  echo "loading a cluster at scale $SCALE into $template (once; FRESH=1 redoes it)" >&2
  rm -rf "$template" "$work/template.done" "$work/template.scale"
  as_pg mkdir -p "$template" "$sock" "$logs"
  as_pg $pgbin/initdb -D "$template" -A trust -U postgres >"$logs/initdb.log"
  cat >>"$template/postgresql.conf" <<EOF

# Benchmarks/postgres.sh
wal_level = replica
archive_mode = on
archive_command = 'true'        # no-op while loading; each phase sets its own
max_wal_senders = 4
shared_buffers = 256MB
autovacuum = off                # nothing runs behind any tool's back
EOF
  local p; p=$(free_port 54500)
  pg_start "$template" $p load
  as_pg $pgbin/pgbench -h "$sock" -p $p -U postgres -i -q -s "$SCALE" postgres >"$logs/pgbench-init.log" 2>&1
  sql_at $p "CREATE EXTENSION pgcrypto" >/dev/null
  # STORAGE PLAIN: the rows stay in the table's pages, never TOASTed or compressed by PostgreSQL.
  sql_at $p "CREATE TABLE random_text (id int NOT NULL, payload text NOT NULL);
             ALTER TABLE random_text ALTER payload SET STORAGE PLAIN" >/dev/null
  sql_at $p "INSERT INTO random_text SELECT g, $random_payload FROM generate_series(1, $random_rows) g" >/dev/null
  sql_at $p "VACUUM (FREEZE, ANALYZE)" >/dev/null
  sql_at $p "CHECKPOINT" >/dev/null
  pg_stop "$template"
  echo "$recipe" >"$work/template.done"
}

# Servers a previous, interrupted run left behind.
for d in "$template" "$work"/pgdata "$work"/restore-*; do
  [ -f "$d/postmaster.pid" ] && as_pg $pgbin/pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
done

# Everything of a previous run, except the template.
rm -rf "$work"/pgdata "$work"/coffer-* "$work"/pgbackrest-* "$work"/basebackup-* "$work"/restore-* \
       "$work"/walsrc "$logs" "$sock"
as_pg mkdir -p "$sock" "$logs"

if [ "$FRESH" = 1 ] || [ "$(cat "$work/template.done" 2>/dev/null)" != "$recipe" ] || [ ! -f "$template/PG_VERSION" ]; then
  load_template
else
  echo "reusing the loaded cluster at scale $SCALE in $template (FRESH=1 to reload)" >&2
fi


data=$work/pgdata
cp -a "$template" "$data"
port=$(free_port 54500)
pg_start "$data" $port source
# Read every file once so that every tool reads from the page cache.
find "$data" -type f -exec cat {} + >/dev/null

data_bytes=$(du_b --exclude=pg_wal "$data")
wal_bytes=$(du_b "$data/pg_wal")
table_info() {   # TABLE -> "<MiB> MiB, zstd -3 ratio <r>" of its main fork (all segment files)
  local f bytes files; f=$data/$(sql "SELECT pg_relation_filepath('$1')")
  files=("$f"); shopt -s nullglob; files+=("$f".[0-9]*); shopt -u nullglob
  bytes=$(cat "${files[@]}" | wc -c)
  cat "${files[@]}" | zstd -3 -T0 -c | wc -c \
    | awk -v b="$bytes" '{ printf "%.1f MiB, zstd -3 ratio %.2f", b / 1048576, b / $1 }'
}
accounts_info=$(table_info pgbench_accounts)
random_info=$(table_info random_text)

# --- coffer setup ----------------------------------------------------------------------------
conf=$work/coffer.toml
vault=$work/coffer-vault
as_pg sh -c "printf '%s\n' 'coffer-bench-passphrase' > '$work/coffer-passphrase'; chmod 600 '$work/coffer-passphrase'"
cat >"$conf" <<EOF
[vault]
path = "$vault"
passphrase_file = "$work/coffer-passphrase"

[source.bench]
engine = "postgres"
connection = "host=$sock port=$port user=postgres dbname=postgres"
data_directory = "$data"
compression_level = $COFFER_LEVEL
${BLOCK_SIZE:+block_size = $BLOCK_SIZE}
EOF
chmod 644 "$conf"
as_pg "$coffer" vault init --config "$conf" >"$logs/coffer-init.log" 2>&1 \
  || { echo "postgres.sh: coffer vault init failed:" >&2; cat "$logs/coffer-init.log" >&2; exit 1; }

wal_push_ok=0
"$coffer" wal-push --help 2>/dev/null | grep -q '^USAGE: coffer wal-push' && wal_push_ok=1

# --- pgBackRest setup ------------------------------------------------------------------------
pbconf=$work/pgbackrest.conf
repo=$work/pgbackrest-repo
as_pg mkdir -p "$repo" "$work/pgbackrest-log" "$work/pgbackrest-lock" "$work/pgbackrest-spool"
cat >"$pbconf" <<EOF
[global]
repo1-path=$repo
repo1-retention-full=99
log-path=$work/pgbackrest-log
lock-path=$work/pgbackrest-lock
spool-path=$work/pgbackrest-spool
log-level-console=warn
log-level-file=info
compress-type=zst
compress-level=1
process-max=2
start-fast=y
EOF
if [ "$PGBACKREST_CIPHER" = 1 ]; then
  printf 'repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=coffer-bench-passphrase\n' >>"$pbconf"
fi
cat >>"$pbconf" <<EOF

[bench]
pg1-path=$data
pg1-socket-path=$sock
pg1-port=$port
pg1-user=postgres
EOF
chmod 644 "$pbconf"
pgbr() { as_pg pgbackrest --config="$pbconf" --stanza=bench "$@"; }
pgbr_archive="pgbackrest --config=$pbconf --stanza=bench archive-push %p"

set_archive_command "$pgbr_archive"
pgbr stanza-create >"$logs/pgbackrest-stanza-create.log" 2>&1 \
  || { echo "postgres.sh: pgbackrest stanza-create failed:" >&2; cat "$logs/pgbackrest-stanza-create.log" >&2; exit 1; }
set_archive_command true

# Each tool runs alone, with a checkpoint just before, so none pays for another's dirty
# buffers. During coffer's and pg_basebackup's runs archive_command is a no-op; during
# pgBackRest's it is pgBackRest's archive-push (its backup waits for the WAL to be archived).
coffer_run() {   # VAR LOGNAME args...
  sql "CHECKPOINT" >/dev/null
  timed "$1" "$2" as_pg "$coffer" "${@:3}"
}
pgbr_run() {     # VAR LOGNAME args...
  set_archive_command "$pgbr_archive"
  sql "CHECKPOINT" >/dev/null
  timed "$1" "$2" pgbr "${@:3}"
  set_archive_command true
}
basebackup_run() {   # VAR DIR
  sql "CHECKPOINT" >/dev/null
  timed "$1" "$(basename "$2")" as_pg $pgbin/pg_basebackup -h "$sock" -p $port -U postgres \
    -D "$2" -Fp -X stream -c fast
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { printf "%s", v[int((NR + 1) / 2)] }'; }

echo "full backups (scale $SCALE, data $(mib $data_bytes) MiB), round 1" >&2
v0=$(du_b "$vault")
coffer_run c_full_t coffer-backup-1 backup --source bench --config "$conf"
v1=$(du_b "$vault")
r0=$(du_b "$repo")
pgbr_run p_full_t pgbackrest-backup-full backup --type=full
r1=$(du_b "$repo")
basebackup_run b_full_t "$work/basebackup-1"
b1=$(du_b "$work/basebackup-1")
c_full=$((v1 - v0)); p_full=$((r1 - r0))
c_full_all=" $c_full_t"; p_full_all=" $p_full_t"; b_full_all=" $b_full_t"
c_full_cpu_all=" $c_full_t_cpu"; p_full_cpu_all=" $p_full_t_cpu"; b_full_cpu_all=" $b_full_t_cpu"
echo "  round 1: coffer $c_full_t, pgbackrest $p_full_t, pg_basebackup $b_full_t s" >&2

# --- the ~1% change --------------------------------------------------------------------------
echo "changing ~1% ($CHANGE)" >&2
if [ "$CHANGE" = contiguous ]; then
  acc_where="aid <= $((accounts / 100))"; rnd_where="id <= $((random_rows / 100))"
else
  acc_where="aid % 100 = 0"; rnd_where="id % 100 = 0"
fi
sql "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE $acc_where" >/dev/null
sql "UPDATE random_text SET payload = $random_payload WHERE $rnd_where" >/dev/null
sql "CHECKPOINT" >/dev/null
check_query="SELECT (SELECT count(*) || ' ' || sum(abalance) FROM pgbench_accounts) || ' ' ||
                    (SELECT count(*) || ' ' || sum(hashtext(payload)::bigint) FROM random_text)"
expected=$(sql "$check_query")
data2_bytes=$(du_b --exclude=pg_wal "$data")

echo "second backups" >&2
v1=$(du_b "$vault")
coffer_run c_second_t coffer-backup-2 backup --source bench --config "$conf"
v2=$(du_b "$vault")
r1=$(du_b "$repo")
pgbr_run p_second_t pgbackrest-backup-incr backup --type=incr
r2=$(du_b "$repo")
basebackup_run b_second_t "$work/basebackup-2"
b2=$(du_b "$work/basebackup-2")

# --- restores ----------------------------------------------------------------------------------
echo "restores ($RESTORE_CACHE page cache, $RESTORE_ROUNDS rounds)" >&2
cache_for_restore() {   # written back, then (cold) dropped: no restore pays for another's writes
  sync
  if [ "$RESTORE_CACHE" = cold ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
# The disk's own pace for coffer's restore: its vault read while as many bytes as the data
# directory holds are written O_DIRECT, at once, then synced. What no restore of this backup
# from this vault can beat on this disk; restores above it by more than their start-up lost
# time elsewhere.
floor_mib=$(( data2_bytes / 1048576 ))
disk_floor() {
  find "$vault/packs" -type f -exec cat {} + >/dev/null &
  dd if=/dev/zero of="$work/floor" bs=1M count=$floor_mib oflag=direct status=none
  wait
  sync -f "$work/floor"
}
# One function a tool; each round starts with the next one, so that no tool is always first
# (Coffer was, and the first restore of a run was often its slowest).
restore_c() {
  cache_for_restore
  timed t coffer-restore as_pg "$coffer" restore --source bench \
    --target-dir "$work/restore-coffer" --config "$conf"
  c_restore_all+=" $t"; c_restore_cpu_all+=" $t_cpu"
}
restore_p() {
  as_pg mkdir -m 700 "$work/restore-pgbackrest"
  cache_for_restore
  timed t pgbackrest-restore pgbr restore --pg1-path="$work/restore-pgbackrest" \
    --type=immediate --target-action=promote
  p_restore_all+=" $t"; p_restore_cpu_all+=" $t_cpu"
}
restore_b() {   # cp -a, then sync of that file system: the other two write their files durably too.
  cache_for_restore
  timed t basebackup-restore as_pg sh -c 'cp -a "$1" "$2" && sync -f "$2"' cp \
    "$work/basebackup-2" "$work/restore-basebackup"
  b_restore_all+=" $t"; b_restore_cpu_all+=" $t_cpu"
}
restore_f() {
  cache_for_restore
  timed t disk-floor disk_floor
  f_restore_all+=" $t"
}
for t in c p b f; do declare "${t}_restore_all="; declare "${t}_restore_cpu_all="; done
order=(c p b f)
for round in $(seq "$RESTORE_ROUNDS"); do
  rm -rf "$work"/restore-* "$work/floor"
  first=$(( (round - 1) % ${#order[@]} ))
  for i in $(seq 0 $(( ${#order[@]} - 1 ))); do
    "restore_${order[$(( (first + i) % ${#order[@]} ))]}"
  done
  echo "  round $round (first: ${order[$first]}): coffer ${c_restore_all##* }, pgbackrest ${p_restore_all##* }, cp -a ${b_restore_all##* }, disk floor ${f_restore_all##* } s" >&2
done
rm -f "$work/floor"
for t in c p b f; do
  all=${t}_restore_all; cpu=${t}_restore_cpu_all
  printf -v "${t}_restore_t" '%s' "$(median <<<"${!all}")"
  printf -v "${t}_restore_t_cpu" '%s' "$(median <<<"${!cpu}")"
done

# Each restore must start and hold what the source held at the second backup.
vport=$(free_port $((port + 1)))
verify() {   # NAME DIR
  local got
  pg_start "$2" $vport "verify-$1" -c archive_mode=off
  local i
  for i in $(seq 600); do   # wait for recovery to end (pgBackRest's restore promotes)
    [ "$(sql_at $vport "SELECT pg_is_in_recovery()")" = f ] && break; sleep 0.2
  done
  got=$(sql_at $vport "$check_query")
  pg_stop "$2"
  if [ "$got" != "$expected" ]; then
    echo "postgres.sh: the $1 restore differs: got '$got', the source had '$expected'" >&2; exit 1
  fi
  echo "verified $1 restore: started, $got" >&2
}
verify coffer "$work/restore-coffer"
verify pgbackrest "$work/restore-pgbackrest"
verify pg_basebackup "$work/restore-basebackup"

# --- the full backups' later rounds --------------------------------------------------------------
# After the restores, so that their writes (and the deletions of the scratch copies, on a
# file system mounted with `discard`) do not slow the restores' disk. The cluster is then the
# changed one: the same size, 1% of its rows different. The page cache is warmed again as
# before round 1. Coffer backs up into a fresh scratch vault (into the same one it would only
# dedupe), pgBackRest into its repository again (a full backup copies every file whatever is
# there), pg_basebackup into a scratch directory. Sizes in the table are round 1's.
if [ "$FULL_ROUNDS" -gt 1 ]; then
  echo "full backups, rounds 2-$FULL_ROUNDS" >&2
  find "$data" -type f -exec cat {} + >/dev/null
  scratch_conf=$work/coffer-scratch.toml
  sed "s|^path = \".*\"|path = \"$work/coffer-scratch-vault\"|" "$conf" >"$scratch_conf"
  chmod 644 "$scratch_conf"
  for round in $(seq 2 "$FULL_ROUNDS"); do
    rm -rf "$work/coffer-scratch-vault" "$work/basebackup-scratch"
    as_pg "$coffer" vault init --config "$scratch_conf" >"$logs/coffer-scratch-init.log" 2>&1 \
      || { echo "postgres.sh: coffer vault init (scratch) failed:" >&2; cat "$logs/coffer-scratch-init.log" >&2; exit 1; }
    coffer_run t coffer-backup-full-$round backup --source bench --config "$scratch_conf"
    c_full_all+=" $t"; c_full_cpu_all+=" $t_cpu"
    pgbr_run t pgbackrest-backup-full-$round backup --type=full
    p_full_all+=" $t"; p_full_cpu_all+=" $t_cpu"
    basebackup_run t "$work/basebackup-scratch"
    b_full_all+=" $t"; b_full_cpu_all+=" $t_cpu"
    echo "  round $round: coffer ${c_full_all##* }, pgbackrest ${p_full_all##* }, pg_basebackup ${b_full_all##* } s" >&2
  done
  rm -rf "$work/coffer-scratch-vault" "$work/basebackup-scratch" "$scratch_conf"
fi
for t in c p b; do
  all=${t}_full_all; cpu=${t}_full_cpu_all
  printf -v "${t}_full_t" '%s' "$(median <<<"${!all}")"
  printf -v "${t}_full_t_cpu" '%s' "$(median <<<"${!cpu}")"
done

# --- WAL push latency --------------------------------------------------------------------------
# Full segments of mixed WAL (random text inserts and pgbench_accounts updates), archived by
# a plain cp into walsrc, then pushed one by one by each tool into its own repository.
echo "WAL push latency ($WAL_SEGMENTS segments)" >&2
walsrc=$work/walsrc
as_pg mkdir -p "$walsrc"
sql "CREATE TABLE wal_gen (payload text)" >/dev/null
set_archive_command "test ! -f $walsrc/%f && cp %p $walsrc/%f"
segments() { find "$walsrc" -maxdepth 1 -name '[0-9A-F]*' ! -name '*.*' | sort; }
step=$((accounts / 50 > 0 ? accounts / 50 : 1))
for i in $(seq 200); do
  [ "$(segments | wc -l)" -gt "$WAL_SEGMENTS" ] && break
  sql "INSERT INTO wal_gen SELECT $random_payload FROM generate_series(1, 2000)" >/dev/null
  lo=$(( (i * step) % accounts ))
  sql "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > $lo AND aid <= $((lo + 20000))" >/dev/null
  [ $((i % 10)) -eq 0 ] && sql "CHECKPOINT" >/dev/null
  sleep 0.2
done
for i in $(seq 100); do [ "$(segments | wc -l)" -gt "$WAL_SEGMENTS" ] && break; sleep 0.2; done
set_archive_command true
mapfile -t segs < <(segments | head -n "$WAL_SEGMENTS")
[ "${#segs[@]}" -eq "$WAL_SEGMENTS" ] || { echo "postgres.sh: only ${#segs[@]} WAL segments were made" >&2; exit 1; }

push_each() {   # OUTFILE LOGNAME command-before-segment...: ms per segment into OUTFILE
  local out=$1 log=$logs/$2.log seg t0; shift 2
  : >"$out"; : >"$log"
  for seg in "${segs[@]}"; do
    t0=$EPOCHREALTIME
    if ! "$@" "$seg" >>"$log" 2>&1; then
      echo "postgres.sh: FAILED: $* $seg" >&2; tail -20 "$log" >&2; return 1
    fi
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }' >>"$out"
  done
}
stats() {   # FILE -> "mean p95" (nearest rank)
  sort -n "$1" | awk '{ v[NR] = $1; s += $1 } END { i = int(NR * 0.95 + 0.999); if (i > NR) i = NR;
    printf "%.1f %.1f\n", s / NR, v[i] }'
}
sync
push_each "$work/pgbackrest-push.ms" pgbackrest-archive-push pgbr archive-push
read -r p_push_mean p_push_p95 < <(stats "$work/pgbackrest-push.ms")
# coffer twice: opening the vault with the config's passphrase (one scrypt derivation a call),
# and with a key file, into a second vault made for it.
c_push_mean=n/a; c_push_p95=n/a; k_push_mean=n/a; k_push_p95=n/a
c_push_note="coffer wal-push: not available"; failed=0
if [ "$wal_push_ok" = 1 ]; then
  c_push_note=""
  if push_each "$work/coffer-push.ms" coffer-wal-push as_pg "$coffer" wal-push --config "$conf" --source bench; then
    read -r c_push_mean c_push_p95 < <(stats "$work/coffer-push.ms")
  else
    c_push_note="coffer wal-push (passphrase): FAILED, see $logs/coffer-wal-push.log"; failed=1
  fi
  kvault=$work/coffer-vault-keyfile key=$work/coffer-keyfile
  if as_pg "$coffer" vault init --vault "$kvault" --key-file "$key" >"$logs/coffer-init-keyfile.log" 2>&1 \
     && push_each "$work/coffer-push-keyfile.ms" coffer-wal-push-keyfile \
          as_pg "$coffer" wal-push --config "$conf" --vault "$kvault" --key-file "$key" --source bench; then
    read -r k_push_mean k_push_p95 < <(stats "$work/coffer-push-keyfile.ms")
  else
    c_push_note="${c_push_note:+$c_push_note; }coffer wal-push (key file): FAILED, see $logs/coffer-wal-push-keyfile.log"; failed=1
  fi
fi

# --- report ------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "-"; else printf "%.2f", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
c_second=$((v2 - v1)); p_second=$((r2 - r1))
if [ -n "${COFFER_BIN:-}" ]; then
  rev="COFFER_BIN=$COFFER_BIN"
else
  rev="git $(git --no-optional-locks rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [ -n "$(git --no-optional-locks status --porcelain 2>/dev/null)" ] && rev="$rev + uncommitted changes"
fi

echo
echo "Coffer vs pgBackRest vs pg_basebackup — PostgreSQL 15, same cluster, same run"
echo "machine:   $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, $(uname -r)"
echo "versions:  coffer $("$coffer" --version) ($rev), $(pgbackrest version), $($pgbin/postgres --version)"
echo "data:      pgbench scale $SCALE: pgbench_accounts $accounts rows ($accounts_info)"
echo "           random_text: $random_rows rows of base64 of random bytes ($random_info)"
echo "           data directory $(mib $data_bytes) MiB without pg_wal ($(mib $wal_bytes) MiB pg_wal); $(mib $data2_bytes) MiB after the change"
echo "change:    $CHANGE: UPDATE pgbench_accounts WHERE $acc_where; new payload for random_text WHERE $rnd_where; CHECKPOINT"
echo "settings:  coffer: zstd $COFFER_LEVEL (the source's compression_level), encrypted, block_size ${BLOCK_SIZE:-as the plugin defaults};"
echo "           pgBackRest: zst level 1, process-max 2, start-fast, $([ "$PGBACKREST_CIPHER" = 1 ] && echo "aes-256-cbc" || echo "no encryption")"
echo
fmt='%-34s %12s %12s %14s %10s %10s\n'
printf "$fmt" "" coffer pgbackrest pg_basebackup "c/pgbr" "c/pgbb"
printf "$fmt" "full backup (s), median" "$c_full_t" "$p_full_t" "$b_full_t" "$(ratio $c_full_t $p_full_t)" "$(ratio $c_full_t $b_full_t)"
printf "$fmt" "  CPU, user + system (s)" "$c_full_t_cpu" "$p_full_t_cpu" "$b_full_t_cpu" "$(ratio $c_full_t_cpu $p_full_t_cpu)" "$(ratio $c_full_t_cpu $b_full_t_cpu)"
printf "$fmt" "full backup size (MiB)" "$(mib $c_full)" "$(mib $p_full)" "$(mib $b1)" "$(ratio $c_full $p_full)" "$(ratio $c_full $b1)"
printf "$fmt" "second backup (s)" "$c_second_t" "$p_second_t" "$b_second_t" "$(ratio $c_second_t $p_second_t)" "$(ratio $c_second_t $b_second_t)"
printf "$fmt" "  CPU, user + system (s)" "$c_second_t_cpu" "$p_second_t_cpu" "$b_second_t_cpu" "$(ratio $c_second_t_cpu $p_second_t_cpu)" "$(ratio $c_second_t_cpu $b_second_t_cpu)"
printf "$fmt" "second backup growth (MiB)" "$(mib $c_second)" "$(mib $p_second)" "$(mib $b2)" "$(ratio $c_second $p_second)" "$(ratio $c_second $b2)"
printf "$fmt" "second growth / data size" "$(pct $c_second $data2_bytes)" "$(pct $p_second $data2_bytes)" "$(pct $b2 $data2_bytes)" "" ""
printf "$fmt" "restore of the second (s), median" "$c_restore_t" "$p_restore_t" "$b_restore_t" "$(ratio $c_restore_t $p_restore_t)" "$(ratio $c_restore_t $b_restore_t)"
printf "$fmt" "  CPU, user + system (s)" "$c_restore_t_cpu" "$p_restore_t_cpu" "$b_restore_t_cpu" "$(ratio $c_restore_t_cpu $p_restore_t_cpu)" "$(ratio $c_restore_t_cpu $b_restore_t_cpu)"
printf "$fmt" "WAL push mean (ms/segment)" "$c_push_mean" "$p_push_mean" "" "$(ratio $c_push_mean $p_push_mean)" ""
printf "$fmt" "WAL push p95 (ms/segment)" "$c_push_p95" "$p_push_p95" "" "$(ratio $c_push_p95 $p_push_p95)" ""
printf "$fmt" "  coffer with a key file: mean" "$k_push_mean" "$p_push_mean" "" "$(ratio $k_push_mean $p_push_mean)" ""
printf "$fmt" "  coffer with a key file: p95" "$k_push_p95" "$p_push_p95" "" "$(ratio $k_push_p95 $p_push_p95)" ""
echo
echo "c/pgbr = coffer / pgBackRest, c/pgbb = coffer / pg_basebackup: below 1 means coffer is faster or smaller."
echo "CPU: user + system seconds of the command and every process it waited for (pgBackRest's own"
echo "  processes, coffer's plugin); pg_basebackup's leaves out the server's WAL sender, which reads for it."
echo "Sizes: growth of the vault / pgBackRest repository (du -sb, its archived WAL included) and the"
echo "  size of pg_basebackup's plain-format directory. Second backup: coffer full (deduplicated),"
echo "  pgBackRest --type=incr (file level), pg_basebackup full again."
echo "Full backups: medians of $FULL_ROUNDS rounds, the tools taking turns (CPU: the median of each"
echo "  tool's rounds); every round, in seconds:"
echo "    coffer:$c_full_all; pgbackrest:$p_full_all; pg_basebackup:$b_full_all"
echo "Restores: coffer restore and pgbackrest restore --type=immediate; pg_basebackup's is a plain"
echo "  'cp -a' of its second backup, then 'sync -f'. Each restored cluster was started on port $vport and gave the"
echo "  source's count(*), sum(abalance) of pgbench_accounts and count, hash sum of random_text."
echo "  Page cache before each restore: $RESTORE_CACHE (RESTORE_CACHE=cold drops it, so repositories are read from disk)."
echo "  Medians of $RESTORE_ROUNDS rounds, the tools taking turns, each round starting with the next tool; every round, in seconds:"
echo "    coffer:$c_restore_all; pgbackrest:$p_restore_all; cp -a:$b_restore_all"
echo "  Disk floor for coffer's restore (the vault's packs read while $floor_mib MiB are written O_DIRECT, then"
echo "    synced): median $f_restore_t s ($f_restore_all); coffer's restore / floor $(ratio $c_restore_t $f_restore_t)."
echo "archive_command: a no-op ('true') during coffer's and pg_basebackup's runs, pgBackRest's"
echo "  archive-push during pgBackRest's (its backup waits for its WAL to be archived); no --no-archive-check."
echo "WAL push: ${#segs[@]} full 16 MiB segments, one process per segment as archive_command runs it;"
echo "  coffer opens the vault with the config's passphrase (first rows) and with a key file."
[ -n "$c_push_note" ] && echo "$c_push_note"
echo "Logs: $logs"
[ "$failed" = 0 ] || { echo "postgres.sh: coffer wal-push failed (above)" >&2; exit 1; }
