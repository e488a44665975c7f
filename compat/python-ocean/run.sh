#!/usr/bin/env bash
# Runs a Python Ocean integration (port-ocean from PyPI) unchanged against the built-in Port of
# ocean-rs: a resync of 3 items, then one of 2. Checks that it created its blueprint, that both
# resyncs finished without an error, and that the stale item-3 was deleted by Ocean's
# reconciliation. Needs Python 3.12 and PyPI; not part of CI.
#
#   compat/python-ocean/run.sh    (PYTHON=python3.12 PORT_OCEAN=0.56.2 LOCAL_PORT=5111 PY_PORT=8011)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3.12}
version=${PORT_OCEAN:-0.56.2}
lport=${LOCAL_PORT:-5111}
pyport=${PY_PORT:-8011}
work=$(mktemp -d)
# Only the server this script started is stopped; before it starts there is nothing to stop (a bare
# `kill 0` would signal the caller's whole process group).
trap 'if [ -n "${rs:-}" ]; then kill "$rs" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
pip=$work/venv/bin/pip
if ! "$pip" install -q "port-ocean[cli]==$version" 2>"$work/pip.log"; then
    # A mirror can lag behind a dependency pin (0.56.2 pins a certifi newer than some mirrors
    # hold): install the package alone, then its requirements (and the CLI's) with certifi
    # unpinned.
    "$pip" install -q --no-deps "port-ocean==$version"
    "$work/venv/bin/python" -c '
import importlib.metadata as m
for r in m.requires("port-ocean") or []:
    if "extra ==" not in r or "cli" in r.split(";")[1]:
        r = r.split(";")[0].strip()
        print("certifi" if r.startswith("certifi") else r)' >"$work/requirements.txt"
    "$pip" install -q -r "$work/requirements.txt"
fi

cargo build -q -p ocean-example-jira --manifest-path "$root/Cargo.toml"
mkdir "$work/rs"
(cd "$work/rs" && OCEAN__LOCAL_PORT__PORT=$lport OCEAN__APPLICATION__PORT=0 \
    exec "$root/target/debug/ocean-example-jira" >"$work/rs.log" 2>&1) &
rs=$!
base=http://127.0.0.1:$lport
for _ in $(seq 100); do curl -sf -o /dev/null "$base/" && break; sleep 0.1; done

export OCEAN__PORT__BASE_URL=$base OCEAN__PORT__CLIENT_ID=local OCEAN__PORT__CLIENT_SECRET=local
export OCEAN__INTEGRATION__IDENTIFIER=py-test OCEAN__INTEGRATION__TYPE=pytest-type
export OCEAN__INITIALIZE_PORT_RESOURCES=true OCEAN__EVENT_LISTENER__TYPE=ONCE
cd "$here"
for count in 3 2; do
    rc=0
    ITEM_COUNT=$count timeout 120 "$work/venv/bin/ocean" sail -p "$pyport" -O . >"$work/py-$count.log" 2>&1 || rc=$?
    if [ $rc != 0 ] || grep -q '| ERROR' "$work/py-$count.log" || ! grep -q 'Resync finished successfully' "$work/py-$count.log"; then
        echo "resync of $count items did not finish cleanly:" >&2
        grep -E '\| (ERROR|WARNING)' "$work/py-$count.log" >&2 || tail -20 "$work/py-$count.log" >&2
        exit 1
    fi
done

token=$(curl -sf -X POST "$base/v1/auth/access_token" -H 'content-type: application/json' \
    -d '{"clientId":"local","clientSecret":"local"}' | sed 's/.*"accessToken":"\([^"]*\)".*/\1/')
status() { curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "$base/v1/$1"; }
[ "$(status blueprints/pyItem)" = 200 ] || { echo "no blueprint pyItem" >&2; exit 1; }
for i in 1 2; do
    [ "$(status blueprints/pyItem/entities/item-$i)" = 200 ] || { echo "item-$i missing" >&2; exit 1; }
done
[ "$(status blueprints/pyItem/entities/item-3)" = 404 ] || { echo "stale item-3 was not deleted" >&2; exit 1; }
echo "port-ocean $version ran unchanged against the built-in Port: blueprint, 2 resyncs, stale entity deleted"
