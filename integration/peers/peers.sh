#!/usr/bin/env bash
# Real third-party peers for testing rme, on 127.0.0.1 only.
# Adapted from the steering repo's harness/peers.sh; the OTel Python SDK venv is not installed (rme's tests do not use it).
#
# usage: peers.sh install [--update]
#        peers.sh start  NAME...     (NAME: vm vm-new vm-sid prometheus prometheus-new prometheus-sid
#                                     prometheus-sid-ct vmagent vmalert otelcol carbon statsd fail2ban
#                                     mtail | graphite | all)
#        peers.sh stop   NAME...|all
#        peers.sh restart NAME...
#        peers.sh clean  NAME...|all (stop and delete its state/data dir)
#        peers.sh status
#        peers.sh env                (print export lines: URLs/ports/paths for tests)
#        peers.sh versions           (installed versions of every peer)
#        peers.sh running            (names of the peers running now, one a line)
#
# State (pids, configs, data, logs) lives under $PEERS_DIR (default ${TMPDIR:-/tmp}/rme-peers),
# one sub-directory per peer. Non-apt tools (rotel wheel, statsd npm, and Debian trixie's and sid's
# newer victoria-metrics and prometheus, unpacked with dpkg -x) live under $PEERS_TOOLS (default
# /opt/rme-peers). vm-new / prometheus-new are trixie's (1.112 / 2.53); vmagent and vmalert come from
# the same victoria-metrics package. vm-sid / prometheus-sid / prometheus-sid-ct are sid's (1.145 /
# 3.5.3; -ct runs with --enable-feature=created-timestamp-zero-ingestion; that build has no OTLP
# receiver). Ports can be overridden with the env vars below.
# Every start is idempotent (a running peer is left alone) and waits for readiness with a timeout.
set -euo pipefail

HARNESS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS_DIR="${PEERS_DIR:-${TMPDIR:-/tmp}/rme-peers}"
PEERS_TOOLS="${PEERS_TOOLS:-/opt/rme-peers}"
START_TIMEOUT="${START_TIMEOUT:-30}"   # seconds to wait for readiness
STOP_TIMEOUT="${STOP_TIMEOUT:-15}"     # seconds to wait for exit after SIGTERM (then SIGKILL)

VM_PORT="${VM_PORT:-8428}"
PROM_PORT="${PROM_PORT:-9090}"
OTLP_GRPC_PORT="${OTLP_GRPC_PORT:-4317}"
OTLP_HTTP_PORT="${OTLP_HTTP_PORT:-4318}"
CARBON_PORT="${CARBON_PORT:-2003}"
CARBON_PICKLE_PORT="${CARBON_PICKLE_PORT:-2004}"
CARBON_QUERY_PORT="${CARBON_QUERY_PORT:-7002}"
STATSD_PORT="${STATSD_PORT:-8125}"
STATSD_MGMT_PORT="${STATSD_MGMT_PORT:-8126}"
STATSD_FLUSH_MS="${STATSD_FLUSH_MS:-1000}"
MTAIL_PORT="${MTAIL_PORT:-3903}"
# The newer peers' ports follow VM_PORT / PROM_PORT (8430, 9092, 8429, 8880 by default), so a
# shifted set of ports for the older peers shifts them too.
VM_NEW_PORT="${VM_NEW_PORT:-$((VM_PORT + 2))}"
PROM_NEW_PORT="${PROM_NEW_PORT:-$((PROM_PORT + 2))}"
VMAGENT_PORT="${VMAGENT_PORT:-$((VM_PORT + 1))}"
# sid's: 8431, 9093 and 9094 by default
VM_SID_PORT="${VM_SID_PORT:-$((VM_PORT + 3))}"
PROM_SID_PORT="${PROM_SID_PORT:-$((PROM_PORT + 3))}"
PROM_SID_CT_PORT="${PROM_SID_CT_PORT:-$((PROM_PORT + 4))}"
# not 8880 (vmalert's own default): vmalert-tool unittest always binds :8880 for its scratch storage
VMALERT_PORT="${VMALERT_PORT:-$((VM_PORT + 462))}"
# vmagent forwards to vm-new; vmalert reads vm-new and writes its ALERTS series back there.
VMAGENT_REMOTE_WRITE_URL="${VMAGENT_REMOTE_WRITE_URL:-http://127.0.0.1:${VM_NEW_PORT}/api/v1/write}"
VMALERT_DATASOURCE_URL="${VMALERT_DATASOURCE_URL:-http://127.0.0.1:${VM_NEW_PORT}}"
VMALERT_RULES="${VMALERT_RULES:-$(cd "$HARNESS/../.." && pwd)/examples/alerts.yml}"
VMALERT_EVAL_INTERVAL="${VMALERT_EVAL_INTERVAL:-1s}"
# Prometheus scrapes itself; it remote-writes to VM unless PROM_REMOTE_WRITE_URL is set empty.
PROM_REMOTE_WRITE_URL="${PROM_REMOTE_WRITE_URL-http://127.0.0.1:${VM_PORT}/api/v1/write}"
PROM_SCRAPE_INTERVAL="${PROM_SCRAPE_INTERVAL:-2s}"
F2B_BANTIME="${F2B_BANTIME:-5s}"
F2B_FINDTIME="${F2B_FINDTIME:-60s}"
F2B_MAXRETRY="${F2B_MAXRETRY:-3}"
# mtail tails these files (comma separated); default: the fail2ban peer's log.
MTAIL_LOGS="${MTAIL_LOGS:-$PEERS_DIR/fail2ban/fail2ban.log}"
MTAIL_PROGS="${MTAIL_PROGS:-$HARNESS/mtail}"

ROTEL_VERSION="0.0.1a15"
STATSD_VERSION="0.9.0"
OTEL_SDK_VERSION="1.45.2"
APT_PKGS=(victoria-metrics prometheus graphite-carbon python3-whisper fail2ban mtail jsonnet openssl systemd-journal-remote auditd
          netcat-openbsd curl libpython3.11 python3 python3-venv unzip logrotate tor-geoipdb)
ALL=(vm prometheus otelcol carbon statsd fail2ban mtail)

# Newer receivers from Debian trixie and sid, fetched with a throw-away apt configuration (the
# system's sources are never touched). The mirror defaults to the one this machine's Debian sources use.
TRIXIE_PKGS=(victoria-metrics prometheus)
SID_PKGS=(victoria-metrics prometheus)
TRIXIE_MIRROR="${TRIXIE_MIRROR:-$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources; grep -hs '^deb ' /etc/apt/sources.list; } \
  | grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)}"
TRIXIE_MIRROR="${TRIXIE_MIRROR:-http://deb.debian.org/debian}"
TRIXIE="$PEERS_TOOLS/trixie"
VM_NEW_BIN="$TRIXIE/victoria-metrics/usr/bin"
PROM_NEW_BIN="$TRIXIE/prometheus/usr/bin"
SID="$PEERS_TOOLS/sid"
VM_SID_BIN="$SID/victoria-metrics/usr/bin"
PROM_SID_BIN="$SID/prometheus/usr/bin"
# vmagent 1.79 (bookworm's /usr/bin/vmagent) works as well: VMAGENT_BIN=/usr/bin/vmagent. bookworm's
# vmalert lacks -notifier.blackhole and -rule.evalDelay, so vmalert is trixie's.
VMAGENT_BIN="${VMAGENT_BIN:-$VM_NEW_BIN/vmagent}"
VMALERT_BIN="$VM_NEW_BIN/vmalert"
# after the peers they talk to, so that start/stop go in dependency order
ALL+=(vm-new prometheus-new vmagent vmalert vm-sid prometheus-sid prometheus-sid-ct)

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
log() { echo "peers: $*" >&2; }
die() { echo "peers: ERROR: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- helpers
port_listening() { # proto port -> 0 if something listens on 127.0.0.1:port (or any addr)
  local flag=-ltn; [ "$1" = udp ] && flag=-lun
  ss -H "$flag" 2>/dev/null | awk '{print $4}' | grep -Eq "(^|[:.])$2\$"
}
# alive = exists and is not a zombie (an exited child of ours stays a zombie until PID 1 reaps it)
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! ps -o stat= -p "$1" 2>/dev/null | grep -q '^Z'; }
peer_pid() { cat "$PEERS_DIR/$1/pid" 2>/dev/null || true; }
peer_running() { # pid alive and its command line still names the peer's dir (guards against pid reuse)
  local pid; pid=$(peer_pid "$1"); pid_alive "$pid" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -e "$PEERS_DIR/$1/" -e "$PEERS_DIR/$1 "
}

wait_until() { # timeout_s cmd... ; polls every 0.1s
  local t=$1; shift; local end=$(( $(date +%s) + t ))
  while [ "$(date +%s)" -lt "$end" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

check_ports_free() { # name proto:port...
  local name=$1; shift
  for pp in "$@"; do
    if port_listening "${pp%%:*}" "${pp##*:}"; then
      die "$name: port ${pp##*:}/${pp%%:*} already in use by another process (ss -ltnp / ss -lunp)"
    fi
  done
}

launch() { # name logfile cmd... ; runs detached, records pid+cmd
  local name=$1 logf=$2; shift 2
  local d="$PEERS_DIR/$name"
  printf '%q ' "$@" > "$d/cmd"; echo >> "$d/cmd"
  setsid "$@" >>"$logf" 2>&1 < /dev/null &
  echo $! > "$d/pid"
}

finish_start() { # name t0 ready-cmd...
  local name=$1 t0=$2; shift 2
  local d="$PEERS_DIR/$name"
  if ! wait_until "$START_TIMEOUT" "$@"; then
    log "$name: not ready after ${START_TIMEOUT}s; last log lines:"
    tail -n 20 "$d"/*.log >&2 2>/dev/null || true
    stop_one "$name" || true
    die "$name failed to start"
  fi
  peer_running "$name" || die "$name exited during startup (see $d)"
  echo $(( $(now_ms) - t0 )) > "$d/startup_ms"
  log "$name: ready in $(cat "$d/startup_ms") ms (pid $(peer_pid "$name"))"
}

# ---------------------------------------------------------------- install
cmd_install() {
  local update=0; [ "${1:-}" = "--update" ] && update=1
  # 1. Debian packages. Never let their init scripts start system services.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  local apt_opts=(-o DPkg::Lock::Timeout=600 -y --no-install-recommends)
  if [ $update = 1 ] || ! apt-cache policy victoria-metrics 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    timeout 900 apt-get -o DPkg::Lock::Timeout=600 update
  fi
  local pkgs=("${APT_PKGS[@]}")
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm  >/dev/null || pkgs+=(npm)
  DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install "${apt_opts[@]}" "${pkgs[@]}"
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  # Debian's packages may have started nothing (policy-rc.d), but make sure of it:
  for s in victoria-metrics prometheus carbon-cache fail2ban mtail; do
    pgrep -x "$s" >/dev/null 2>&1 && log "warning: a system '$s' is running (not started by us); stop it with 'service $s stop'"
  done

  mkdir -p "$PEERS_TOOLS"
  # 2. rotel (OpenTelemetry collector, Rust) from its PyPI wheel; the binary is inside the wheel.
  if [ ! -x "$PEERS_TOOLS/rotel/rotel/rotel-agent" ]; then
    local tmp; tmp=$(mktemp -d)
    # the wheel's binary links libpython3.11 (Debian 12's), so ask for the cp311 build explicitly
    timeout 600 python3 -m pip download --no-deps -d "$tmp" --only-binary=:all: --python-version 3.11 \
      --implementation cp --abi cp311 --platform manylinux_2_34_x86_64 "rotel==$ROTEL_VERSION"
    rm -rf "$PEERS_TOOLS/rotel"; mkdir -p "$PEERS_TOOLS/rotel"
    python3 -m zipfile -e "$tmp"/rotel-*.whl "$PEERS_TOOLS/rotel"
    chmod +x "$PEERS_TOOLS/rotel/rotel/rotel-agent"; rm -rf "$tmp"
  fi
  # 3. Etsy statsd from npm.
  if [ ! -f "$PEERS_TOOLS/statsd/node_modules/statsd/stats.js" ]; then
    mkdir -p "$PEERS_TOOLS/statsd"
    (cd "$PEERS_TOOLS/statsd" && timeout 600 npm install --no-audit --no-fund --ignore-scripts "statsd@$STATSD_VERSION")
  fi
  # 4. Debian trixie's victoria-metrics (with vmagent, vmalert) and prometheus, unpacked; then sid's.
  install_suite trixie "$TRIXIE" "$update" "${TRIXIE_PKGS[@]}"
  install_suite sid "$SID" "$update" "${SID_PKGS[@]}"
  cmd_versions
}

install_suite() { # suite dest update(0|1) pkg...: fetch and unpack the suite's pkgs under dest unless already there
  local suite=$1 dest=$2 update=$3 pkg missing=0; shift 3
  for pkg in "$@"; do [ -s "$dest/$pkg.version" ] || missing=1; done
  [ $missing = 0 ] && [ "$update" = 0 ] && return 0
  local tmp; tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $TRIXIE_MIRROR $suite main" > "$tmp/sources.list"
  # Own source list, lists and cache; no sources.list.d; nothing written under /var/lib/apt.
  local o=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o Dir::Cache::pkgcache=
           -o Dir::Cache::srcpkgcache= -o Acquire::Languages=none -o APT::Sandbox::User=root
           -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
           -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
           -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false)
  timeout 600 apt-get "${o[@]}" update
  (cd "$tmp/debs" && timeout 900 apt-get "${o[@]}" download "$@")
  mkdir -p "$dest"
  for pkg in "$@"; do
    local deb; deb=$(ls "$tmp/debs/${pkg}_"*.deb)
    rm -rf "${dest:?}/$pkg" "$dest/$pkg.version"
    dpkg -x "$deb" "$dest/$pkg"
    dpkg-deb -f "$deb" Version > "$dest/$pkg.version"
  done
  rm -rf "$tmp"
}

cmd_versions() {
  echo "victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo missing)"
  echo "prometheus       $(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || echo missing)"
  echo "graphite-carbon  $(dpkg-query -W -f='${Version}' graphite-carbon 2>/dev/null || echo missing)"
  echo "python3-whisper  $(dpkg-query -W -f='${Version}' python3-whisper 2>/dev/null || echo missing)"
  echo "fail2ban         $(dpkg-query -W -f='${Version}' fail2ban 2>/dev/null || echo missing)"
  echo "mtail            $(dpkg-query -W -f='${Version}' mtail 2>/dev/null || echo missing)"
  echo "rotel            $("$PEERS_TOOLS/rotel/rotel/rotel-agent" --version 2>/dev/null || echo missing) (wheel $ROTEL_VERSION)"
  echo "victoria-metrics $(cat "$TRIXIE/victoria-metrics.version" 2>/dev/null || echo missing) (trixie, vm-new vmagent vmalert)"
  echo "prometheus       $(cat "$TRIXIE/prometheus.version" 2>/dev/null || echo missing) (trixie, prometheus-new)"
  echo "victoria-metrics $(cat "$SID/victoria-metrics.version" 2>/dev/null || echo missing) (sid, vm-sid)"
  echo "prometheus       $(cat "$SID/prometheus.version" 2>/dev/null || echo missing) (sid, prometheus-sid prometheus-sid-ct)"
  echo "statsd           $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$PEERS_TOOLS/statsd/node_modules/statsd/package.json" 2>/dev/null || echo missing) (node $(node --version 2>/dev/null))"
}

# ---------------------------------------------------------------- per-peer start
start_vm() { vm_like vm "$VM_PORT" victoria-metrics; }
start_vm_new() { need "$VM_NEW_BIN/victoria-metrics"; vm_like vm-new "$VM_NEW_PORT" "$VM_NEW_BIN/victoria-metrics"; }
need() { [ -x "$1" ] || die "$1 not installed: run peers.sh install"; }
start_vm_sid() { need "$VM_SID_BIN/victoria-metrics"; vm_like vm-sid "$VM_SID_PORT" "$VM_SID_BIN/victoria-metrics"; }

vm_like() { # name port binary
  local name=$1 port=$2 bin=$3 d="$PEERS_DIR/$1"; check_ports_free "$name" "tcp:$port"
  echo "$port" > "$d/ports"; echo "$d/data" > "$d/datadir"
  local t0; t0=$(now_ms)
  # -search.latencyOffset=0s: instant queries at 'now' are not shifted 30s into the past.
  # -search.disableCache: no rollup-result cache (stale answers while a test writes).
  # -retentionPeriod=100y: old test timestamps are kept (default 1 month silently drops them).
  launch "$name" "$d/vm.log" "$bin" -storageDataPath="$d/data" -httpListenAddr="127.0.0.1:$port" \
    -search.latencyOffset=0s -search.disableCache -retentionPeriod=100y -loggerLevel=INFO ${VM_EXTRA_FLAGS:-}
  finish_start "$name" "$t0" bash -c "curl -sf http://127.0.0.1:$port/health | grep -q OK"
}

start_prometheus() { prometheus_like prometheus "$PROM_PORT" prometheus "$PROM_REMOTE_WRITE_URL"; }
# The newer Prometheus only receives (remote-write receiver on); it forwards nowhere.
start_prometheus_new() {
  need "$PROM_NEW_BIN/prometheus"; prometheus_like prometheus-new "$PROM_NEW_PORT" "$PROM_NEW_BIN/prometheus" ""
}

# sid's Prometheus 3.5.3 only receives, like prometheus-new; -ct turns a remote-write 2.0 created
# timestamp into a zero sample (created-timestamp-zero-ingestion).
start_prometheus_sid() {
  need "$PROM_SID_BIN/prometheus"; prometheus_like prometheus-sid "$PROM_SID_PORT" "$PROM_SID_BIN/prometheus" ""
}
start_prometheus_sid_ct() {
  need "$PROM_SID_BIN/prometheus"
  prometheus_like prometheus-sid-ct "$PROM_SID_CT_PORT" "$PROM_SID_BIN/prometheus" "" \
    --enable-feature=created-timestamp-zero-ingestion
}

prometheus_like() { # name port binary remote_write_url [flag...]
  local name=$1 port=$2 bin=$3 rw=$4 d="$PEERS_DIR/$1"; shift 4; check_ports_free "$name" "tcp:$port"
  echo "$port" > "$d/ports"; echo "$d/data" > "$d/datadir"
  {
    echo "global:"
    echo "  scrape_interval: $PROM_SCRAPE_INTERVAL"
    echo "  evaluation_interval: $PROM_SCRAPE_INTERVAL"
    echo "scrape_configs:"
    echo "  - job_name: prometheus-self"
    echo "    static_configs:"
    echo "      - targets: ['127.0.0.1:$port']"
    if [ -n "$rw" ]; then
      echo "remote_write:"
      echo "  - url: $rw"
      echo "    queue_config:"
      echo "      batch_send_deadline: 1s"
    fi
  } > "$d/prometheus.yml"
  local t0; t0=$(now_ms)
  launch "$name" "$d/prometheus.log" "$bin" --config.file="$d/prometheus.yml" \
    --storage.tsdb.path="$d/data" --web.listen-address="127.0.0.1:$port" \
    --web.enable-remote-write-receiver --web.enable-lifecycle "$@" ${PROM_EXTRA_FLAGS:-}
  finish_start "$name" "$t0" curl -sf "http://127.0.0.1:$port/-/ready"
}

# vmagent: a site's relay. Accepts remote-write on /api/v1/write, queues on disk under
# $PEERS_DIR/vmagent/queue while its upstream is down (and across its own restarts).
start_vmagent() {
  local d="$PEERS_DIR/vmagent"; need "$VMAGENT_BIN"; check_ports_free vmagent "tcp:$VMAGENT_PORT"
  echo "$VMAGENT_PORT" > "$d/ports"; echo "$d/queue" > "$d/datadir"
  local t0; t0=$(now_ms)
  launch vmagent "$d/vmagent.log" "$VMAGENT_BIN" -httpListenAddr="127.0.0.1:$VMAGENT_PORT" \
    -remoteWrite.url="$VMAGENT_REMOTE_WRITE_URL" -remoteWrite.tmpDataPath="$d/queue" \
    -remoteWrite.flushInterval=1s -loggerLevel=INFO ${VMAGENT_EXTRA_FLAGS:-}
  finish_start vmagent "$t0" bash -c "curl -sf http://127.0.0.1:$VMAGENT_PORT/health | grep -q OK"
}

# vmalert: evaluates $VMALERT_RULES (copied into its dir: what it loaded) against the datasource,
# writes ALERTS/ALERTS_FOR_STATE back to it; notifications go nowhere (-notifier.blackhole).
start_vmalert() {
  local d="$PEERS_DIR/vmalert"; need "$VMALERT_BIN"; check_ports_free vmalert "tcp:$VMALERT_PORT"
  echo "$VMALERT_PORT" > "$d/ports"; echo "(none: state in $VMALERT_DATASOURCE_URL)" > "$d/datadir"
  cp "$VMALERT_RULES" "$d/rules.yml"
  local t0; t0=$(now_ms)
  # -rule.evalDelay=0s: evaluate at 'now' (default 30s in the past, for ingestion delay).
  launch vmalert "$d/vmalert.log" "$VMALERT_BIN" -rule="$d/rules.yml" \
    -datasource.url="$VMALERT_DATASOURCE_URL" -remoteWrite.url="$VMALERT_DATASOURCE_URL" \
    -remoteWrite.flushInterval=1s -notifier.blackhole -evaluationInterval="$VMALERT_EVAL_INTERVAL" \
    -rule.evalDelay=0s -httpListenAddr="127.0.0.1:$VMALERT_PORT" -loggerLevel=INFO ${VMALERT_EXTRA_FLAGS:-}
  finish_start vmalert "$t0" bash -c "curl -sf http://127.0.0.1:$VMALERT_PORT/health | grep -q OK"
}

start_otelcol() {
  local d="$PEERS_DIR/otelcol" bin="$PEERS_TOOLS/rotel/rotel/rotel-agent"
  [ -x "$bin" ] || die "rotel not installed: run peers.sh install"
  check_ports_free otelcol "tcp:$OTLP_GRPC_PORT" "tcp:$OTLP_HTTP_PORT"
  echo "$OTLP_GRPC_PORT $OTLP_HTTP_PORT" > "$d/ports"; echo "$d/received.jsonl" > "$d/datadir"
  touch "$d/received.jsonl"
  local t0; t0=$(now_ms)
  # blackhole exporter + a Python processor that appends every received metric to received.jsonl;
  # --debug-log metrics prints the collector-style detailed dump into otelcol.log.
  ROTEL_DUMP_FILE="$d/received.jsonl" launch otelcol "$d/otelcol.log" "$bin" start \
    --otlp-grpc-endpoint "127.0.0.1:$OTLP_GRPC_PORT" --otlp-http-endpoint "127.0.0.1:$OTLP_HTTP_PORT" \
    --exporter blackhole --debug-log metrics --debug-log-verbosity detailed \
    --otlp-with-metrics-processor "$HARNESS/lib/rotel_dump_processor.py" \
    --pid-file "$d/rotel.pid" --log-file "$d/rotel-daemon.log" ${OTEL_EXTRA_FLAGS:-}
  finish_start otelcol "$t0" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$OTLP_HTTP_PORT/)\" != 000 ] && ss -H -ltn | grep -q ':$OTLP_GRPC_PORT '"
}

start_carbon() {
  local d="$PEERS_DIR/carbon"
  check_ports_free carbon "tcp:$CARBON_PORT" "tcp:$CARBON_PICKLE_PORT" "tcp:$CARBON_QUERY_PORT"
  mkdir -p "$d/conf" "$d/storage/whisper" "$d/log" "$d/run"
  echo "$CARBON_PORT $CARBON_PICKLE_PORT $CARBON_QUERY_PORT" > "$d/ports"; echo "$d/storage/whisper" > "$d/datadir"
  cat > "$d/conf/carbon.conf" <<EOF
[cache]
STORAGE_DIR    = $d/storage/
LOCAL_DATA_DIR = $d/storage/whisper/
CONF_DIR       = $d/conf/
LOG_DIR        = $d/log/
PID_DIR        = $d/run/
DATABASE = whisper
ENABLE_LOGROTATION = False
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
MIN_TIMESTAMP_RESOLUTION = 1
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = $CARBON_PORT
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = $CARBON_PICKLE_PORT
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = $CARBON_QUERY_PORT
USE_FLOW_CONTROL = True
LOG_UPDATES = False
LOG_CREATES = True
LOG_LISTENER_CONN_SUCCESS = False
CACHE_WRITE_STRATEGY = sorted
WHISPER_AUTOFLUSH = True
WHISPER_FALLOCATE_CREATE = False
# Tagged series (name;k=v) are stored under whisper/_tagged/ either way; ENABLE_TAGS only
# controls posting them to a graphite-web TagDB, which does not exist here.
ENABLE_TAGS = False
EOF
  # 1-second resolution for 6h so every statsd flush (1s) is kept as its own point.
  cat > "$d/conf/storage-schemas.conf" <<EOF
[carbon]
pattern = ^carbon\\.
retentions = 10s:1d

[default]
pattern = .*
retentions = ${CARBON_RETENTIONS:-1s:6h,10s:7d}
EOF
  printf '[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n' > "$d/conf/storage-aggregation.conf"
  local t0; t0=$(now_ms)
  launch carbon "$d/carbon.log" carbon-cache --config="$d/conf/carbon.conf" \
    --pidfile="$d/run/carbon-cache.pid" --logdir="$d/log" --nodaemon start
  # readiness: all three listeners up (do not connect to 2003: an empty line is logged as invalid)
  finish_start carbon "$t0" bash -c "ss -H -ltn | grep -q '127.0.0.1:$CARBON_PORT ' && ss -H -ltn | grep -q '127.0.0.1:$CARBON_QUERY_PORT '"
}

start_statsd() {
  local d="$PEERS_DIR/statsd" js="$PEERS_TOOLS/statsd/node_modules/statsd/stats.js"
  [ -f "$js" ] || die "statsd not installed: run peers.sh install"
  check_ports_free statsd "udp:$STATSD_PORT" "tcp:$STATSD_MGMT_PORT"
  peer_running carbon || log "warning: carbon is not running; statsd flushes will fail until it is"
  echo "$STATSD_PORT/udp $STATSD_MGMT_PORT/tcp" > "$d/ports"; echo "(none: data goes to carbon)" > "$d/datadir"
  cat > "$d/config.js" <<EOF
{
  port: $STATSD_PORT,
  address: "127.0.0.1",
  mgmt_address: "127.0.0.1",
  mgmt_port: $STATSD_MGMT_PORT,
  flushInterval: $STATSD_FLUSH_MS,
  backends: ["./backends/graphite"],
  graphiteHost: "127.0.0.1",
  graphitePort: $CARBON_PORT,
  graphite: { legacyNamespace: false, globalPrefix: "stats" },
  deleteIdleStats: ${STATSD_DELETE_IDLE:-true},
  debug: false,
  dumpMessages: ${STATSD_DUMP:-false}
}
EOF
  local t0; t0=$(now_ms)
  launch statsd "$d/statsd.log" node "$js" "$d/config.js"
  finish_start statsd "$t0" bash -c "ss -H -lun | grep -q '127.0.0.1:$STATSD_PORT ' && { exec 3<>/dev/tcp/127.0.0.1/$STATSD_MGMT_PORT; echo health >&3; timeout 2 head -n1 <&3 | grep -q up; }"
}

start_fail2ban() {
  local d="$PEERS_DIR/fail2ban"; mkdir -p "$d/conf/filter.d" "$d/conf/action.d" "$d/run"
  cp /etc/fail2ban/filter.d/sshd.conf /etc/fail2ban/filter.d/common.conf "$d/conf/filter.d/"
  cp /etc/fail2ban/action.d/dummy.conf "$d/conf/action.d/"
  echo "(no port; socket $d/run/fail2ban.sock)" > "$d/ports"; echo "$d" > "$d/datadir"
  touch "$d/auth.log" "$d/fail2ban.log"
  cat > "$d/conf/fail2ban.conf" <<EOF
[Definition]
loglevel = INFO
logtarget = $d/fail2ban.log
syslogsocket = auto
socket = $d/run/fail2ban.sock
pidfile = $d/run/fail2ban.pid
allowipv6 = auto
dbfile = $d/fail2ban.sqlite3
dbpurgeage = 1d
dbmaxmatches = 10
[Thread]
EOF
  cat > "$d/conf/jail.conf" <<EOF
[DEFAULT]
ignoreself = true
ignoreip = 127.0.0.1/8 ::1
backend = polling
usedns = no
maxretry = $F2B_MAXRETRY
findtime = $F2B_FINDTIME
bantime = $F2B_BANTIME
# dummy action: only appends +ip / -ip to a file; no firewall is touched.
banaction = dummy
action = dummy[target="$d/run/fail2ban.dummy"]

[sshd]
enabled = true
filter = sshd
port = ssh
logpath = $d/auth.log
EOF
  local t0; t0=$(now_ms)
  launch fail2ban "$d/server.log" fail2ban-server -f -x -c "$d/conf" -s "$d/run/fail2ban.sock" -p "$d/run/fail2ban.pid"
  finish_start fail2ban "$t0" fail2ban-client -s "$d/run/fail2ban.sock" ping
}

start_mtail() {
  local d="$PEERS_DIR/mtail"; check_ports_free mtail "tcp:$MTAIL_PORT"
  echo "$MTAIL_PORT" > "$d/ports"; echo "(none)" > "$d/datadir"
  # mtail (polling mode) only watches files that exist at startup, and starts at their END.
  local f; IFS=, read -ra _logs <<< "$MTAIL_LOGS"
  for f in "${_logs[@]}"; do mkdir -p "$(dirname "$f")"; touch "$f"; done
  local t0; t0=$(now_ms)
  launch mtail "$d/mtail.log" mtail -progs "$MTAIL_PROGS" -logs "$MTAIL_LOGS" \
    -address 127.0.0.1 -port "$MTAIL_PORT" -logtostderr -poll_interval 250ms -log_dir "$d"
  finish_start mtail "$t0" curl -sf "http://127.0.0.1:$MTAIL_PORT/metrics"
}

start_one() {
  local name=$1
  declare -F "start_${name//-/_}" >/dev/null || die "unknown peer '$name' (known: ${ALL[*]} graphite all)"
  mkdir -p "$PEERS_DIR/$name"
  if peer_running "$name"; then log "$name: already running (pid $(peer_pid "$name"))"; return 0; fi
  rm -f "$PEERS_DIR/$name/pid" "$PEERS_DIR/$name/startup_ms"
  "start_${name//-/_}"
}

stop_one() {
  local name=$1 d="$PEERS_DIR/$1" pid
  pid=$(peer_pid "$name")
  peer_running "$name" || pid=""
  if [ "$name" = fail2ban ] && pid_alive "$pid"; then   # graceful: logs "Shutdown in progress"
    timeout 10 fail2ban-client -s "$d/run/fail2ban.sock" stop >/dev/null 2>&1 || true
  fi
  if pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local end=$(( $(date +%s) + STOP_TIMEOUT ))
    while pid_alive "$pid" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
    if pid_alive "$pid"; then log "$name: still alive after ${STOP_TIMEOUT}s, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    log "$name: stopped (pid $pid)"
  fi
  rm -f "$d/pid"
}

validate_names() { # dies (in the main shell) on an unknown name
  local n
  for n in "$@"; do
    case " ${ALL[*]} all graphite " in *" $n "*) ;; *) die "unknown peer '$n' (known: ${ALL[*]} graphite all)";; esac
  done
}
expand_names() { # turns 'all'/'graphite' into peer names; output in dependency order
  local want=() n
  for n in "$@"; do
    case $n in all) want+=("${ALL[@]}");; graphite) want+=(carbon statsd);; *) want+=("$n");; esac
  done
  for n in "${ALL[@]}"; do if printf '%s\n' "${want[@]}" | grep -qx "$n"; then echo "$n"; fi; done
}

cmd_status() {
  printf '%-15s %-8s %-7s %-10s %-26s %s\n' PEER PID STATE STARTUP PORTS DATA
  local n
  for n in "${ALL[@]}"; do
    local d="$PEERS_DIR/$n" pid state
    [ -d "$d" ] || { printf '%-15s %-8s %-7s\n' "$n" - absent; continue; }
    pid=$(peer_pid "$n"); state=stopped; peer_running "$n" && state=running
    printf '%-15s %-8s %-7s %-10s %-26s %s\n' "$n" "${pid:--}" "$state" \
      "$(cat "$d/startup_ms" 2>/dev/null || echo -)ms" "$(cat "$d/ports" 2>/dev/null || echo -)" "$(cat "$d/datadir" 2>/dev/null || echo -)"
  done
  echo "PEERS_DIR=$PEERS_DIR"
}

cmd_running() { local n; for n in "${ALL[@]}"; do if peer_running "$n"; then echo "$n"; fi; done; }

cmd_env() {
  cat <<EOF
export PEERS_DIR=$PEERS_DIR
export PEERS_TOOLS=$PEERS_TOOLS
export VM_URL=http://127.0.0.1:$VM_PORT
export VM_WRITE_URL=http://127.0.0.1:$VM_PORT/api/v1/write
export PROM_URL=http://127.0.0.1:$PROM_PORT
export PROM_WRITE_URL=http://127.0.0.1:$PROM_PORT/api/v1/write
export OTLP_GRPC_ENDPOINT=http://127.0.0.1:$OTLP_GRPC_PORT
export OTLP_HTTP_METRICS_URL=http://127.0.0.1:$OTLP_HTTP_PORT/v1/metrics
export OTEL_RECEIVED_JSONL=$PEERS_DIR/otelcol/received.jsonl
export STATSD_ADDR=127.0.0.1:$STATSD_PORT
export CARBON_ADDR=127.0.0.1:$CARBON_PORT
export GRAPHITE_WHISPER_DIR=$PEERS_DIR/carbon/storage/whisper
export F2B_SOCKET=$PEERS_DIR/fail2ban/run/fail2ban.sock
export F2B_AUTH_LOG=$PEERS_DIR/fail2ban/auth.log
export F2B_LOG=$PEERS_DIR/fail2ban/fail2ban.log
export MTAIL_URL=http://127.0.0.1:$MTAIL_PORT/metrics
export VM_NEW_URL=http://127.0.0.1:$VM_NEW_PORT
export VM_NEW_WRITE_URL=http://127.0.0.1:$VM_NEW_PORT/api/v1/write
export VM_NEW_OTLP_ENDPOINT=http://127.0.0.1:$VM_NEW_PORT/opentelemetry
export PROM_NEW_URL=http://127.0.0.1:$PROM_NEW_PORT
export PROM_NEW_WRITE_URL=http://127.0.0.1:$PROM_NEW_PORT/api/v1/write
export VMAGENT_URL=http://127.0.0.1:$VMAGENT_PORT
export VMAGENT_WRITE_URL=http://127.0.0.1:$VMAGENT_PORT/api/v1/write
export VMALERT_URL=http://127.0.0.1:$VMALERT_PORT
export VM_SID_URL=http://127.0.0.1:$VM_SID_PORT
export VM_SID_WRITE_URL=http://127.0.0.1:$VM_SID_PORT/api/v1/write
export VM_SID_OTLP_ENDPOINT=http://127.0.0.1:$VM_SID_PORT/opentelemetry
export PROM_SID_URL=http://127.0.0.1:$PROM_SID_PORT
export PROM_SID_WRITE_URL=http://127.0.0.1:$PROM_SID_PORT/api/v1/write
export PROM_SID_CT_URL=http://127.0.0.1:$PROM_SID_CT_PORT
export PROM_SID_CT_WRITE_URL=http://127.0.0.1:$PROM_SID_CT_PORT/api/v1/write
EOF
}

# ---------------------------------------------------------------- mmdb-writer (test fixtures)
# PyPI mmdb-writer in its own venv: the GeoIP tests build .mmdb fixtures with it.
MMDB_WRITER_VERSION="0.2.7"
install_mmdb_writer() {
  local venv="$PEERS_TOOLS/mmdb-writer"
  "$venv/bin/python" -c 'import mmdb_writer' 2>/dev/null && return 0
  python3 -m venv "$venv"
  timeout 600 "$venv/bin/pip" install -q "mmdb-writer==$MMDB_WRITER_VERSION"
}

# ---------------------------------------------------------------- main
[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in start|stop|restart|clean) validate_names "$@";; esac
case $cmd in
  install) cmd_install "$@"; install_mmdb_writer;;
  versions) cmd_versions;;
  running) cmd_running;;
  start)   [ $# -ge 1 ] || usage; mkdir -p "$PEERS_DIR"; for n in $(expand_names "$@"); do start_one "$n"; done;;
  stop)    [ $# -ge 1 ] || usage; for n in $(expand_names "$@" | tac); do stop_one "$n"; done;;
  restart) [ $# -ge 1 ] || usage; for n in $(expand_names "$@" | tac); do stop_one "$n"; done
           for n in $(expand_names "$@"); do start_one "$n"; done;;
  clean)   [ $# -ge 1 ] || usage; for n in $(expand_names "$@" | tac); do stop_one "$n"; rm -rf "${PEERS_DIR:?}/$n"; log "$n: state removed"; done;;
  status)  cmd_status;;
  env)     cmd_env;;
  -h|--help|help) usage;;
  *) usage;;
esac
