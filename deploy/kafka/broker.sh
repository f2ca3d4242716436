#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft combined mode) from Maven Central jars.
#   deploy/kafka/broker.sh fetch|start|stop|status
# Environment: OMNISTREAM_KAFKA_HOME (state, default ~/.cache/omnistream/kafka),
#   OMNISTREAM_KAFKA_PORT (default 9092), OMNISTREAM_KAFKA_CONTROLLER_PORT (default 9093),
#   OMNISTREAM_KAFKA_HEAP (default 512m).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${OMNISTREAM_KAFKA_HOME:-$HOME/.cache/omnistream/kafka}"
port="${OMNISTREAM_KAFKA_PORT:-9092}"
cport="${OMNISTREAM_KAFKA_CONTROLLER_PORT:-9093}"
heap="${OMNISTREAM_KAFKA_HEAP:-512m}"
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

ready() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

java_cmd() {
  java -Xms128m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$jars/*" "$@"
}

start() {
  fetch
  if running; then echo "broker: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  mkdir -p "$data"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@DATA_DIR@|$data|g" \
      "$here/server.properties.in" > "$data/server.properties"
  if [ ! -f "$data/logs/meta.properties" ]; then
    java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" \
        -c "$data/server.properties" >"$data/format.log" 2>&1 || { cat "$data/format.log" >&2; exit 1; }
  fi
  nohup java -Xms128m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$jars/*" \
       kafka.Kafka "$data/server.properties" >"$data/broker.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if ready; then echo "broker: up on 127.0.0.1:$port (pid $(cat "$pidfile"), logs $data/broker.log)"; return 0; fi
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
  if running && ready; then echo "broker: running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
  elif running; then echo "broker: starting (pid $(cat "$pidfile"))"; exit 3
  else echo "broker: not running"; exit 3; fi
}

case "${1:-}" in
  fetch) fetch ;; start) start ;; stop) stop ;; status) status ;;
  reset) stop; rm -rf "$data"; echo "broker: data removed" ;;
  *) echo "usage: $0 fetch|start|stop|status|reset" >&2; exit 2 ;;
esac
