#!/usr/bin/env bash
# Coffer (physical: mariabackup streamed into the vault; logical: the parallel dump) against
# mariabackup to a local directory and mydumper, on the same MariaDB 10.11 data, in one run:
#   full backup, a ~1% change, second backup (coffer: full again, deduplicated; mariabackup:
#   --incremental-basedir; mydumper: full again), restore of the second backup (coffer
#   physical: restore with prepare; coffer logical: into a new database of the running server;
#   mariabackup: prepare both + copy-back; myloader: into a new database), then ratios.
# Usage (as root): Benchmarks/mysql.sh
#   SIZE_MB=2048     data size (rows of ~1 KiB: half repetitive text, half random bytes)
#   THREADS=2        dump/load connections for coffer logical, mydumper and myloader
#   COFFER_BIN=path  use this coffer (and coffer-mysql beside it) instead of building a
#                    release (scripts/build-release)
#   COFFER_LEVEL=1   zstd level of both coffer sources (compression_level; the vault's default is 3;
#                    mariabackup and mydumper do not compress at all here)
#   RESTORE_BINLOG=off  coffer's logical restore writes the rows to the binlog (on) or not (off,
#                    what myloader does unless given --enable-binlog)
#   RESTORE_CACHE=cold|warm  cold (default): the page cache is dropped before each restore, so
#                    each tool reads its backup from disk as a real restore does (mariabackup's
#                    directory, written through the cache, is otherwise all there; coffer's
#                    packs, written O_DIRECT, are not)
# The physical restores are timed until their files are on disk: mariabackup's copy-back is
# followed by `sync -f` of the target, as coffer's restore ends with a syncfs; the figure
# without that sync is printed too.
# Everything lives in bench-work/mysql (scratch; removed and rebuilt on every run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ "$(id -u)" -eq 0 ] || { echo "mysql.sh: run as root" >&2; exit 1; }
SIZE_MB=${SIZE_MB:-2048}
THREADS=${THREADS:-2}
COFFER_LEVEL=${COFFER_LEVEL:-1}
RESTORE_BINLOG=${RESTORE_BINLOG:-off}
RESTORE_CACHE=${RESTORE_CACHE:-cold}
[[ $RESTORE_CACHE == cold || $RESTORE_CACHE == warm ]] || { echo "RESTORE_CACHE must be cold or warm" >&2; exit 2; }
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || { echo "SIZE_MB must be a positive integer" >&2; exit 2; }
export LC_ALL=C

work=$root/bench-work/mysql
scripts/bootstrap
if [ -n "${COFFER_BIN:-}" ]; then
  coffer=$COFFER_BIN
else
  mkdir -p "$root/bench-work"
  bin=$(scripts/build-release 2>"$root/bench-work/mysql-build.log") \
    || { echo "mysql.sh: scripts/build-release failed:" >&2; tail -20 "$root/bench-work/mysql-build.log" >&2; exit 1; }
  coffer=$bin/coffer
fi
[ -x "$coffer" ] && [ -x "$(dirname "$coffer")/coffer-mysql" ] || { echo "mysql.sh: $coffer or coffer-mysql beside it is missing" >&2; exit 1; }

# --- a scratch server ------------------------------------------------------------------------
pid=""
stop_server() {
  [ -n "$pid" ] || return 0
  mariadb-admin --defaults-file="$work/my.cnf" shutdown 2>/dev/null || kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do sleep 0.2; done
  pid=""
}
trap stop_server EXIT
rm -rf "$work"; mkdir -p "$work/bin"
cp "$coffer" "$(dirname "$coffer")/coffer-mysql" "$work/bin/"; coffer=$work/bin/coffer
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/my.cnf" <<CNF
[mariadbd]
datadir = $work/data
socket = $work/mysqld.sock
port = $port
bind-address = 127.0.0.1
user = root
log-bin = mariadb-bin
binlog_format = ROW
server_id = 1
innodb_buffer_pool_size = 1G
innodb_log_file_size = 256M
log-error = $work/error.log
pid-file = $work/mysqld.pid
[client]
socket = $work/mysqld.sock
user = root
CNF
start_server() {
  mariadbd --defaults-file="$work/my.cnf" </dev/null >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 600); do mariadb-admin --defaults-file="$work/my.cnf" ping >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "mysql.sh: mariadbd did not start" >&2; tail "$work/error.log" >&2; exit 1
}
mariadb-install-db --defaults-file="$work/my.cnf" --auth-root-authentication-method=normal --skip-test-db >/dev/null
start_server
sql() { mariadb --defaults-file="$work/my.cnf" -N -B "$@"; }

rows=$((SIZE_MB * 1024))
echo "loading $SIZE_MB MiB ($rows rows of ~1 KiB, half incompressible) ..."
sql -e "CREATE DATABASE bench"
for t in 1 2 3 4; do
  sql bench -e "CREATE TABLE t$t (id INT PRIMARY KEY, txt VARCHAR(600), rnd VARBINARY(512)) ENGINE=InnoDB;
    INSERT INTO t$t SELECT seq, REPEAT(CONCAT('row ', seq, ' of a fairly repetitive text column; '), 10), RANDOM_BYTES(512)
    FROM seq_1_to_$((rows / 4))"
done
# The tables' size as InnoDB reports it (the data directory also holds the redo log).
datasize=$(sql -e "ANALYZE TABLE bench.t1, bench.t2, bench.t3, bench.t4" >/dev/null; sql -e "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench'")
# Let InnoDB write the loaded pages first, as a steady server would have: right after a bulk
# load most rows are only in the redo log, and the pages written after the first backups would
# count as changed in every tool's second backup (mariabackup's incremental too).
sql -e "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001, GLOBAL innodb_max_dirty_pages_pct = 0"
for _ in $(seq 1200); do [ "$(sql -e "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | cut -f2)" = 0 ] && break; sleep 0.5; done
sql -e "SET GLOBAL innodb_max_dirty_pages_pct_lwm = DEFAULT, GLOBAL innodb_max_dirty_pages_pct = DEFAULT"

# --- helpers -----------------------------------------------------------------------------------
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
size() { du -sb "$1" | cut -f1; }
declare -A T S C   # seconds, bytes stored, CPU seconds; by measurement
echo pw >"$work/pass"
cat >"$work/coffer.toml" <<TOML
[vault]
path = "$work/vault"
passphrase_file = "$work/pass"
[source.phys]
engine = "mysql"
socket = "$work/mysqld.sock"
defaults_file = "$work/my.cnf"
method = "physical"
compression_level = "$COFFER_LEVEL"
[source.logi]
engine = "mysql"
socket = "$work/mysqld.sock"
method = "logical"
databases = "bench"
dump_connections = "$THREADS"
restore_connections = "$THREADS"
restore_binlog = "$RESTORE_BINLOG"
compression_level = "$COFFER_LEVEL"
TOML
c() { "$coffer" "$@" --config "$work/coffer.toml"; }
c vault init >/dev/null
measure() {  # name, output path to size (vault: growth), command...
  local name=$1 path=$2; shift 2
  local before=0; [ -e "$path" ] && before=$(size "$path")
  local t0; t0=$(now)
  # bash's time: CPU seconds (user + system) of the command and every process it waited
  # for (mariabackup under coffer's plugin included; the server's own work not).
  local TIMEFORMAT='%U %S'
  { time "$@" >"$work/$name.log" 2>&1; } 2>"$work/$name.cpu" \
    || { echo "mysql.sh: $name failed:" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
  T[$name]=$(elapsed "$t0" "$(now)")
  C[$name]=$(awk 'END { printf "%.2f", $1 + $2 }' "$work/$name.cpu")
  S[$name]=$(( $(size "$path") - before ))
  printf '%-26s %9ss %8s CPU s %12s bytes\n' "$name" "${T[$name]}" "${C[$name]}" "${S[$name]}"
}

# --- full backups --------------------------------------------------------------------------------
measure coffer-physical-full "$work/vault" c backup --source phys
measure coffer-logical-full "$work/vault" c backup --source logi
measure mariabackup-full "$work/mb-full" mariabackup --defaults-file="$work/my.cnf" --backup --target-dir="$work/mb-full" --user=root --socket="$work/mysqld.sock"
measure mydumper-full "$work/md-full" mydumper -S "$work/mysqld.sock" -u root -B bench -t "$THREADS" -o "$work/md-full"

# --- ~1% change, second backups -------------------------------------------------------------------
sql bench -e "UPDATE t1 SET rnd = RANDOM_BYTES(512) WHERE id <= $((rows / 100))"
measure coffer-physical-second "$work/vault" c backup --source phys
measure coffer-logical-second "$work/vault" c backup --source logi
measure mariabackup-incremental "$work/mb-inc" mariabackup --defaults-file="$work/my.cnf" --backup --target-dir="$work/mb-inc" --incremental-basedir="$work/mb-full" --user=root --socket="$work/mysqld.sock"
measure mydumper-second "$work/md-second" mydumper -S "$work/mysqld.sock" -u root -B bench -t "$THREADS" -o "$work/md-second"

# --- restores ------------------------------------------------------------------------------------
cache_for_restore() {   # written back, then (cold) dropped: no restore pays for another's writes
  sync
  if [ "$RESTORE_CACHE" = cold ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
cache_for_restore
measure coffer-physical-restore "$work/r-coffer" c restore --source phys --target-dir "$work/r-coffer"
cache_for_restore
measure coffer-logical-restore "$work/data" c restore --source logi --target-dir "$work/unused" --set database.bench=bench_coffer
mb_restore() {
  mariabackup --prepare --target-dir="$work/mb-full" &&
  mariabackup --prepare --target-dir="$work/mb-full" --incremental-dir="$work/mb-inc" &&
  mariabackup --copy-back --target-dir="$work/mb-full" --datadir="$work/r-mb"
}
cache_for_restore
measure mariabackup-restore "$work/r-mb" mb_restore
# What copy-back left in the page cache, written out: coffer's restore reports success only then.
measure mariabackup-restore-sync "$work/r-mb" sync -f "$work/r-mb"
T[mariabackup-restore-synced]=$(python3 -c "print(f'{${T[mariabackup-restore]} + ${T[mariabackup-restore-sync]}:.2f}')")
C[mariabackup-restore-synced]=$(python3 -c "print(f'{${C[mariabackup-restore]} + ${C[mariabackup-restore-sync]}:.2f}')")
cache_for_restore
measure myloader-restore "$work/data" myloader -S "$work/mysqld.sock" -u root -d "$work/md-second" -s bench -B bench_myloader -t "$THREADS"
for db in bench_coffer bench_myloader; do
  for t in 1 2 3 4; do
    [ "$(sql -e "CHECKSUM TABLE bench.t$t" | cut -f2)" = "$(sql -e "CHECKSUM TABLE $db.t$t" | cut -f2)" ] \
      || { echo "mysql.sh: $db.t$t differs from bench.t$t" >&2; exit 1; }
  done
done

# --- ratios --------------------------------------------------------------------------------------
echo "page cache before each restore: $RESTORE_CACHE"
r() { python3 -c "a, b = $1, $2; print(f'{a / b:.2f}' if b else '-')"; }
echo
echo "table data: $datasize bytes"
echo "full backup time, coffer physical / mariabackup: $(r "${T[coffer-physical-full]}" "${T[mariabackup-full]}")"
echo "full backup time, coffer logical / mydumper:     $(r "${T[coffer-logical-full]}" "${T[mydumper-full]}")"
echo "restore time, coffer physical / mariabackup + sync: $(r "${T[coffer-physical-restore]}" "${T[mariabackup-restore-synced]}")"
echo "restore time, coffer physical / mariabackup (files not yet on disk): $(r "${T[coffer-physical-restore]}" "${T[mariabackup-restore]}")"
echo "restore time, coffer logical / myloader:         $(r "${T[coffer-logical-restore]}" "${T[myloader-restore]}")"
echo "full backup CPU, coffer physical / mariabackup:  $(r "${C[coffer-physical-full]}" "${C[mariabackup-full]}")"
echo "full backup CPU, coffer logical / mydumper:      $(r "${C[coffer-logical-full]}" "${C[mydumper-full]}")"
echo "restore CPU, coffer physical / mariabackup + sync: $(r "${C[coffer-physical-restore]}" "${C[mariabackup-restore-synced]}")"
echo "restore CPU, coffer logical / myloader (server's work not counted): $(r "${C[coffer-logical-restore]}" "${C[myloader-restore]}")"
echo "second backup stored / data size, coffer physical: $(r "${S[coffer-physical-second]}" "$datasize")"
echo "second backup stored / data size, coffer logical:  $(r "${S[coffer-logical-second]}" "$datasize")"
echo "second backup stored / data size, mariabackup inc: $(r "${S[mariabackup-incremental]}" "$datasize")"
echo "second backup stored / data size, mydumper:        $(r "${S[mydumper-second]}" "$datasize")"
