#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft combined mode) from Maven Central jars.
#   deploy/kafka/broker.sh fetch|start|stop|status
# Environment: OMNISTREAM_KAFKA_HOME (state, default ~/.cache/omnistream/kafka),
#   OMNISTREAM_KAFKA_PORT (default 9092), OMNISTREAM_KAFKA_CONTROLLER_PORT (default 9093),
#   OMNISTREAM_KAFKA_HEAP (default 512m).
# Security (secure.properties.in), with OMNISTREAM_KAFKA_SECURITY=1: two more listeners, SSL on
#   OMNISTREAM_KAFKA_SSL_PORT (default port + 2), which requires a client certificate signed by
#   the CA (mutual TLS), and SASL_SSL with SCRAM-SHA-256 on OMNISTREAM_KAFKA_SASL_PORT (default
#   port + 3). OMNISTREAM_KAFKA_CERTS is a folder of PEM files: ca.pem (the CA clients and broker
#   trust), server.pem and server.key (the broker's certificate, for 127.0.0.1, and its
#   unencrypted key). The SCRAM user OMNISTREAM_KAFKA_SCRAM_USER (default omnistream) with
#   OMNISTREAM_KAFKA_SCRAM_PASSWORD (required; no `,` `]` or `=`) is created when the data folder
#   is formatted, so `reset` before changing them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${OMNISTREAM_KAFKA_HOME:-$HOME/.cache/omnistream/kafka}"
port="${OMNISTREAM_KAFKA_PORT:-9092}"
cport="${OMNISTREAM_KAFKA_CONTROLLER_PORT:-9093}"
heap="${OMNISTREAM_KAFKA_HEAP:-512m}"
secure="${OMNISTREAM_KAFKA_SECURITY:-0}"
ssl_port="${OMNISTREAM_KAFKA_SSL_PORT:-$((port + 2))}"
sasl_port="${OMNISTREAM_KAFKA_SASL_PORT:-$((port + 3))}"
certs="${OMNISTREAM_KAFKA_CERTS:-}"
scram_user="${OMNISTREAM_KAFKA_SCRAM_USER:-omnistream}"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
jars="$home/jars-$version"
data="$home/data-$port"
pidfile="$data/broker.pid"

fetch() {
  if [ -f "$jars/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { echo "broker: maven (mvn) is needed to fetch Kafka $version" >&2; exit 2; }
  echo "broker: fetching Apache Kafka $version jars from Maven Central into $jars" >&2
  rm -rf "$jars"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$jars" -DincludeScope=runtime
  touch "$jars/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

ports() { echo "$port"; if [ "$secure" = 1 ]; then echo "$ssl_port $sasl_port"; fi; }

ready() { for p in $(ports); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || return 1; done; }

where() { echo "127.0.0.1:$port$([ "$secure" != 1 ] || echo " (SSL $ssl_port, SASL_SSL $sasl_port)")"; }

java_cmd() {
  java -Xms128m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$jars/*" "$@"
}

render() {
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@DATA_DIR@|$data|g" \
      -e "s|@SSL_PORT@|$ssl_port|g" -e "s|@SASL_PORT@|$sasl_port|g" -e "s|@CERTS@|$certs|g" "$here/$1"
}

# server.properties; with security, the keys of secure.properties.in replace the base template's.
configure() {
  render server.properties.in > "$data/server.properties"
  [ "$secure" = 1 ] || return 0
  for f in ca.pem server.pem server.key; do
    [ -f "$certs/$f" ] || { echo "broker: OMNISTREAM_KAFKA_CERTS needs $f (got '$certs')" >&2; exit 2; }
  done
  [ -n "${OMNISTREAM_KAFKA_SCRAM_PASSWORD:-}" ] || { echo "broker: OMNISTREAM_KAFKA_SCRAM_PASSWORD is needed" >&2; exit 2; }
  (umask 077 && cat "$certs/server.key" "$certs/server.pem" > "$data/server-keystore.pem")
  render secure.properties.in > "$data/secure.properties"
  awk -F= 'NR == FNR { if (!/^#/) replaced[$1] = 1; next } !($1 in replaced)' \
      "$data/secure.properties" "$data/server.properties" > "$data/server.properties.tmp"
  cat "$data/server.properties.tmp" "$data/secure.properties" > "$data/server.properties"
  rm "$data/server.properties.tmp" "$data/secure.properties"
}

format() {
  local scram=()
  if [ "$secure" = 1 ]; then scram=(--add-scram "SCRAM-SHA-256=[name=$scram_user,password=$OMNISTREAM_KAFKA_SCRAM_PASSWORD]"); fi
  java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" \
      -c "$data/server.properties" "${scram[@]}" >"$data/format.log" 2>&1 || { cat "$data/format.log" >&2; exit 1; }
}

start() {
  fetch
  if running; then echo "broker: already running on $(where) (pid $(cat "$pidfile"))"; return 0; fi
  mkdir -p "$data"
  configure
  if [ ! -f "$data/logs/meta.properties" ]; then format; fi
  nohup java -Xms128m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$jars/*" \
       kafka.Kafka "$data/server.properties" >"$data/broker.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if ready; then echo "broker: up on $(where) (pid $(cat "$pidfile"), logs $data/broker.log)"; return 0; fi
    if ! running; then tail -50 "$data/broker.log" >&2; echo "broker: failed to start" >&2; exit 1; fi
    sleep 0.5
  done
  echo "broker: not ready after 60 s, see $data/broker.log" >&2; exit 1
}

stop() {
  if ! running; then echo "broker: not running"; rm -f "$pidfile"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pidfile"; echo "broker: stopped"
}

status() {
  if running && ready; then echo "broker: running on $(where) (pid $(cat "$pidfile"))"
  elif running; then echo "broker: starting (pid $(cat "$pidfile"))"; exit 3
  else echo "broker: not running"; exit 3; fi
}

case "${1:-}" in
  fetch) fetch ;; start) start ;; stop) stop ;; status) status ;;
  reset) stop; rm -rf "$data"; echo "broker: data removed" ;;
  *) echo "usage: $0 fetch|start|stop|status|reset" >&2; exit 2 ;;
esac
