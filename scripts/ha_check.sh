#!/usr/bin/env bash
# Home Assistant against a real edgesight daemon: install HA core in its own venv, configure the
# MQTT integration through its real config flow (REST: onboarding, then config_entries/flow),
# run mosquitto + `edgesight run` on the shared photos, and assert through HA's REST API that the
# entities appear with sensible states and turn unavailable when the daemon stops.
# Not part of the CI suite (it installs HA, minutes). Usage: scripts/ha_check.sh
# Env: HA_PYTHON (default: pyenv 3.13, then 3.12), HA_VENV (default ~/.cache/edgesight/ha-venv),
#      HA_VERSION (pip spec, default: newest for that Python), EDGESIGHT (default .venv/bin/edgesight).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EDGESIGHT=${EDGESIGHT:-$ROOT/.venv/bin/edgesight}
HA_VENV=${HA_VENV:-$HOME/.cache/edgesight/ha-venv}
MODEL=${MODEL:-/work/shared/testdata/models/mobilenet_v2_1.0_224_quant.tflite}
LABELS=${LABELS:-/work/shared/testdata/models/imagenet_labels.txt}
IMAGES=${IMAGES:-/work/shared/testdata/images}
die() { echo "ha_check: $*" >&2; exit 2; }

if [[ -z "${HA_PYTHON:-}" ]]; then
  for v in 3.13 3.12; do
    c=$(ls -d "$HOME"/.pyenv/versions/$v*/bin/python 2>/dev/null | tail -1 || true)
    [[ -n "$c" ]] && { HA_PYTHON=$c; break; }
    command -v "python$v" >/dev/null && { HA_PYTHON=$(command -v "python$v"); break; }
  done
fi
[[ -n "${HA_PYTHON:-}" ]] || die "Home Assistant core needs Python 3.12 or 3.13; install one (pyenv install 3.13) or set HA_PYTHON"
command -v mosquitto >/dev/null || die "mosquitto is not installed (apt-get install mosquitto)"
[[ -x "$EDGESIGHT" ]] || die "$EDGESIGHT not found (run scripts/setup.sh, or set EDGESIGHT)"

if [[ ! -x "$HA_VENV/bin/hass" ]]; then
  echo "installing Home Assistant core into $HA_VENV with $HA_PYTHON (minutes)"
  rm -rf "$HA_VENV.partial"
  "$HA_PYTHON" -m venv "$HA_VENV.partial"
  "$HA_VENV.partial/bin/pip" install -q "homeassistant${HA_VERSION:-}" paho-mqtt || { rm -rf "$HA_VENV.partial"; die "pip install homeassistant failed"; }
  mv "$HA_VENV.partial" "$HA_VENV"   # only a complete install takes the real name
fi

WORK=$(mktemp -d /tmp/edgesight-ha.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { "$HA_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MQTT_PORT=$(free_port); HA_PORT=$(free_port)

printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MQTT_PORT" > "$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 & PIDS+=($!)

mkdir -p "$WORK/ha"
cat > "$WORK/ha/configuration.yaml" <<YAML
homeassistant:
  name: edgesight check
  time_zone: UTC
http:
  server_host: 127.0.0.1
  server_port: $HA_PORT
api:
config:
onboarding:
YAML
"$HA_VENV/bin/hass" -c "$WORK/ha" > "$WORK/hass.log" 2>&1 & PIDS+=($!)
URL=http://127.0.0.1:$HA_PORT

# The REST dance is in Python (HA's venv has it): onboarding, token, MQTT config flow, state checks.
cat > "$WORK/ha_rest.py" <<'PY'
import json, sys, time, urllib.request
url, step = sys.argv[1], sys.argv[2]
def call(method, path, body=None, token=None, form=False):
    data = None
    headers = {}
    if token: headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode(); headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode(); headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")
import urllib.parse
if step == "setup":
    for _ in range(300):
        try: call("GET", "/api/onboarding"); break
        except Exception: time.sleep(1)
    else: sys.exit("Home Assistant did not answer on " + url)
    cid = url + "/"
    code = call("POST", "/api/onboarding/users", {"client_id": cid, "name": "check", "username": "check", "password": "check-pass-1", "language": "en"})["auth_code"]
    token = call("POST", "/auth/token", {"grant_type": "authorization_code", "code": code, "client_id": cid}, form=True)["access_token"]
    flow = call("POST", "/api/config/config_entries/flow", {"handler": "mqtt"}, token)
    for _ in range(3):
        if flow.get("type") == "create_entry": break
        if flow.get("step_id") == "broker":
            flow = call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", {"broker": "127.0.0.1", "port": int(sys.argv[3])}, token)
        else:
            sys.exit(f"MQTT config flow stopped at {flow}")
    assert flow.get("type") == "create_entry", flow
    print(token)
else:
    token, want = sys.argv[3], step
    deadline = time.time() + 120
    while True:
        states = {s["entity_id"]: s for s in call("GET", "/api/states", token=token) if "edgesight" in s["entity_id"]}
        if want == "up":
            label = next((s for e, s in states.items() if e.endswith("_label")), None)
            score = next((s for e, s in states.items() if e.endswith("_score")), None)
            ok = label and label["state"] not in ("unknown", "unavailable") and score and score["state"] not in ("unknown", "unavailable")
        else:
            ok = states and all(s["state"] == "unavailable" for s in states.values())
        if ok or time.time() > deadline: break
        time.sleep(2)
    for e, s in sorted(states.items()):
        print(f"  {e:55} {s['state']:14} {json.dumps({k: v for k, v in s['attributes'].items() if k in ('score', 'since', 'unit_of_measurement', 'icon', 'down')})}")
    assert ok, f"entities not {want}"
    if want == "up":
        assert not any("drift" in e for e in states), "drift sensor present though drift is not running"
        assert not any("deploy" in e for e in states), "deploy sensor present though [deploy] is off"
        float(score["state"]); assert "since" in label["attributes"] and "T" in label["attributes"]["since"]
        seen, deadline = [score["state"]], time.time() + 90  # the Score must move while the daemon runs
        while len(set(seen)) < 3 and time.time() < deadline:
            time.sleep(2)
            seen.append(call("GET", f"/api/states/{score['entity_id']}", token=token)["state"])
        print(f"  score over time: {' '.join(dict.fromkeys(seen))}")
        assert len(set(seen)) >= 3, "the Score did not move"
PY
TOKEN=$("$HA_VENV/bin/python" "$WORK/ha_rest.py" "$URL" setup "$MQTT_PORT") || { tail -20 "$WORK/hass.log"; die "Home Assistant set-up failed"; }
echo "Home Assistant up on $URL, MQTT integration configured through its config flow"

cat > "$WORK/edgesight.toml" <<TOML
[model]
path = "$MODEL"
labels = "$LABELS"
[source]
spec = "$IMAGES"
realtime = true
loop = true
fps = 2
[mqtt]
device_id = "hacheck"
host = "127.0.0.1"
port = $MQTT_PORT
stats_interval = 2
TOML
"$EDGESIGHT" run --config "$WORK/edgesight.toml" > "$WORK/daemon.log" 2>&1 & DAEMON=$!; PIDS+=($DAEMON)
echo "daemon running; entities:"
"$HA_VENV/bin/python" "$WORK/ha_rest.py" "$URL" up "$TOKEN" || { tail -20 "$WORK/daemon.log"; die "entities did not come up"; }
kill -TERM "$DAEMON"; wait "$DAEMON" || true
echo "daemon stopped; entities:"
"$HA_VENV/bin/python" "$WORK/ha_rest.py" "$URL" down "$TOKEN" || die "entities did not turn unavailable"
echo "ha_check: OK"
