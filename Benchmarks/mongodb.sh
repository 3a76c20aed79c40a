#!/usr/bin/env bash
# MongoDB: coffer dump and restore of SecantusDB, a second dump after ~1% change, and the
# floor no dump can beat: one plain cursor reading the same collections, storing nothing
# (pymongo's find_raw_batches: raw BSON off the wire, never decoded).
#
#   Benchmarks/mongodb.sh                  # SIZE_MIB=1024 over COLLECTIONS=4
#   SIZE_MIB=32 Benchmarks/mongodb.sh      # a quick run
#
# Variables: SIZE_MIB (BSON data, default 1024), COLLECTIONS (default 4), DUMP_CONNECTIONS
# (default 2), RESTORE_CONNECTIONS (default 2), CHANGE (contiguous: the first 1% of each
# collection, default; scattered: every 100th document), COFFER_BIN (a coffer with coffer-mongodb
# beside it; default: a release built by scripts/build-release). Everything lives in bench-work/mongodb/.
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
COLLECTIONS=${COLLECTIONS:-4}
DUMP_CONNECTIONS=${DUMP_CONNECTIONS:-2}
RESTORE_CONNECTIONS=${RESTORE_CONNECTIONS:-2}
CHANGE=${CHANGE:-contiguous}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/bench-work/mongodb"
PY="$(command -v python3)"

if [ -z "${COFFER_BIN:-}" ]; then
  mkdir -p "$ROOT/bench-work"
  COFFER_BIN="$("$ROOT/scripts/build-release" 2>"$ROOT/bench-work/mongodb-build.log")/coffer" \
    || { echo "mongodb.sh: scripts/build-release failed:" >&2; tail -20 "$ROOT/bench-work/mongodb-build.log" >&2; exit 1; }
fi
command -v secantusd-py >/dev/null || { echo "secantusd-py not found (scripts/bootstrap installs secantusdb)" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/logs"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_server() { # name -> sets URI (not in a subshell, so that PIDS keeps the server for cleanup)
  local port; port=$(free_port)
  # The default oplog cap (100000 entries): SecantusDB scans the whole oplog for every query
  # of it (~75 us an entry), and a dump makes two.
  secantusd-py --host 127.0.0.1 --port "$port" --storage-path "$WORK/$1" --log-level WARNING \
    >"$WORK/logs/$1.log" 2>&1 &
  PIDS+=($!)
  URI="mongodb://127.0.0.1:$port/?directConnection=true"
  "$PY" - "$URI" <<'EOF'
import sys, time, pymongo
deadline = time.time() + 60
while True:
    try:
        pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500).admin.command("ping"); break
    except Exception:
        if time.time() > deadline: sys.exit("server did not start")
        time.sleep(0.1)
EOF
}

start_server source; SRC=$URI
start_server target; DST=$URI

echo "loading ${SIZE_MIB} MiB into $COLLECTIONS collections..." >&2
now() { date +%s.%N; }
l0=$(now)
"$PY" - "$SRC" "$SIZE_MIB" "$COLLECTIONS" <<'EOF'
import sys, os, base64, pymongo
uri, mib, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = pymongo.MongoClient(uri)
doc_bytes = 1024
per = mib * 1024 * 1024 // doc_bytes // n
for k in range(n):
    coll = c.bench[f"c{k}"]
    batch = []
    for i in range(per):
        # Half random (base64, compresses ~1.3x), half repetitive: like real documents.
        batch.append({"_id": i, "k": k, "n": i, "text": base64.b64encode(os.urandom(360)).decode(),
                      "tags": ["alpha", "beta", "gamma"], "body": "lorem ipsum dolor sit amet " * 16})
        if len(batch) == 2000:
            coll.insert_many(batch, ordered=False); batch = []
    if batch: coll.insert_many(batch, ordered=False)
    coll.create_index("n")
EOF
l1=$(now); LOAD=$("$PY" -c "print($l1-$l0)")

cat >"$WORK/coffer.toml" <<EOF
[vault]
path = "$WORK/vault"
passphrase_file = "$WORK/passphrase"

[source.bench]
engine = "mongodb"
uri = "$SRC"
dump_connections = $DUMP_CONNECTIONS
EOF
echo "bench passphrase" >"$WORK/passphrase"
"$COFFER_BIN" vault init --config "$WORK/coffer.toml" >/dev/null

vault_bytes() { du -sb "$WORK/vault" | cut -f1; }
BYTES=$("$PY" - "$SRC" <<'EOF'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).bench
print(sum(sum(len(b) for b in db[c].find_raw_batches()) for c in db.list_collection_names()))
EOF
)
MB=$("$PY" -c "print($BYTES/1e6)")

t0=$(now)
"$PY" - "$SRC" <<'EOF' >/dev/null
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).bench
print(sum(sum(len(b) for b in db[c].find_raw_batches()) for c in sorted(db.list_collection_names())))
EOF
t1=$(now); FLOOR=$("$PY" -c "print($t1-$t0)")

v0=$(vault_bytes); t0=$(now)
"$COFFER_BIN" backup --source bench --config "$WORK/coffer.toml" >"$WORK/logs/dump1.out" 2>"$WORK/logs/dump1.err"
t1=$(now); DUMP1=$("$PY" -c "print($t1-$t0)"); v1=$(vault_bytes)

"$PY" - "$SRC" "$CHANGE" <<'EOF'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).bench
for c in db.list_collection_names():
    n = db[c].count_documents({})
    # contiguous: the first 1% of each collection; scattered: every 100th document (which,
    # at CDC chunks of ~1 MiB, touches every chunk).
    q = {"n": {"$lt": n // 100}} if sys.argv[2] == "contiguous" else {"n": {"$mod": [100, 7]}}
    db[c].update_many(q, {"$set": {"body": "changed " * 40}})
EOF

t0=$(now)
"$COFFER_BIN" backup --source bench --config "$WORK/coffer.toml" >"$WORK/logs/dump2.out" 2>"$WORK/logs/dump2.err"
t1=$(now); DUMP2=$("$PY" -c "print($t1-$t0)"); v2=$(vault_bytes)

t0=$(now)
"$COFFER_BIN" restore --source bench --config "$WORK/coffer.toml" --target-uri "$DST" \
  --set restore_connections=$RESTORE_CONNECTIONS >"$WORK/logs/restore.out" 2>"$WORK/logs/restore.err"
t1=$(now); RESTORE=$("$PY" -c "print($t1-$t0)")

"$PY" - "$SRC" "$DST" <<'EOF'
import sys, pymongo
a = pymongo.MongoClient(sys.argv[1]).bench; b = pymongo.MongoClient(sys.argv[2]).bench
for c in sorted(a.list_collection_names()):
    x = [len(r) for r in a[c].find_raw_batches(sort=[("_id", 1)])]
    y = [len(r) for r in b[c].find_raw_batches(sort=[("_id", 1)])]
    if a[c].count_documents({}) != b[c].count_documents({}) or sum(x) != sum(y):
        sys.exit(f"restore differs in {c}")
EOF

"$PY" - <<EOF
mb = $MB
rows = [("load: pymongo insert_many (ref.)", $LOAD, None), ("plain cursor (floor)", $FLOOR, None), ("coffer dump 1", $DUMP1, $v1 - $v0),
        ("coffer dump 2 (~1% changed)", $DUMP2, $v2 - $v1), ("coffer restore", $RESTORE, None)]
print(f"data: {mb:.0f} MB of BSON in $COLLECTIONS collections; dump_connections=$DUMP_CONNECTIONS restore_connections=$RESTORE_CONNECTIONS")
print(f"{'step':32} {'seconds':>9} {'MB/s':>8} {'vault growth':>14}")
for name, s, g in rows:
    growth = f"{g/1e6:.1f} MB" if g is not None else ""
    print(f"{name:32} {s:9.2f} {mb/s:8.1f} {growth:>14}")
print(f"second dump stored {($v2 - $v1) / max(1, $v1 - $v0) * 100:.1f}% of the first")
EOF
