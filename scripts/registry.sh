#!/usr/bin/env bash
# scripts/registry.sh — a REAL Confluent-compatible schema registry on loopback for Gress's integration tests:
# Apicurio Registry (in-memory H2 storage), whose Confluent API is served under /apis/ccompat/v7.
#
#   scripts/registry.sh up       build once (cached), start (idempotent), wait until ready, print env
#   scripts/registry.sh down     stop it
#   scripts/registry.sh status   up/down (exit 3 if down)
#   scripts/registry.sh env      print `export GRESS_SCHEMA_REGISTRY_URL=...`
#
# scripts/services calls this for `up`/`down`/`status`/`env`. Why Apicurio 2.4.2.Final, built here:
# Confluent's registry is not on Maven Central, and the Apicurio apps there are libraries, not runnable
# distributions. 2.4.2.Final is the newest whose modules Maven Central serves: 2.5.x, 2.6.x and 3.x need
# apicurio-registry-schema-util-provider, which Central does not have. So a small Maven project below wraps
# io.apicurio:apicurio-registry-app:2.4.2.Final and runs the Quarkus Maven plugin over it, with two fixes:
#  - everit-json-schema comes from its Maven Central coordinates (com.github.erosb), not JitPack's;
#  - Quarkus extension apicurio-common-app-components-config-index has no deployment module on Central, so it is
#    left out, and a producer supplies the empty list of runtime-editable properties it would have indexed.
# The build (~2 min the first time, needs Maven Central) is cached outside the checkout, in
# ${XDG_CACHE_HOME:-~/.cache}/gress/services (GRESS_SERVICES_CACHE overrides), so CI builds it once per machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${GRESS_SERVICES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gress/services}
RUN=${GRESS_SERVICES_RUN:-$ROOT/.cache/services/run}

APICURIO_VERSION=2.4.2.Final
QUARKUS_VERSION=2.16.4.Final       # the Quarkus of Apicurio 2.4.2.Final's parent POM
EVERIT_VERSION=1.14.2
PORT=${GRESS_REGISTRY_PORT:-18081}
HOST=127.0.0.1

HOME_DIR=$CACHE/apicurio-registry-$APICURIO_VERSION
REG_RUN=$RUN/registry
PIDFILE=$REG_RUN/registry.pid
LOGFILE=$REG_RUN/registry.log
PATTERN=apicurio-registry-runner.jar

log() { echo "[registry] $*" >&2; }
die() { echo "[registry] ERROR: $*" >&2; exit 1; }

url() { echo "http://$HOST:$PORT/apis/ccompat/v7"; }

live_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$PATTERN" || return 1
  echo "$pid"
}

port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# Ready = the Confluent API answers a subjects listing.
ready() { curl -fsS "$(url)/subjects" >/dev/null 2>&1; }

build() {
  [ -f "$HOME_DIR/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  log "building Apicurio Registry $APICURIO_VERSION with Maven (first run only, ~2 min)"
  local work=$HOME_DIR.tmp
  rm -rf "$work"
  mkdir -p "$work/src/main/java/gress/registry" "$work/src/main/resources"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <!-- Apicurio's parent manages every version the app needs; our version must equal it (\${project.version}). -->
  <parent>
    <groupId>io.apicurio</groupId>
    <artifactId>apicurio-registry</artifactId>
    <version>$APICURIO_VERSION</version>
    <relativePath/>
  </parent>
  <groupId>gress.services</groupId>
  <artifactId>apicurio-registry-runner</artifactId>
  <dependencies>
    <dependency>
      <groupId>io.apicurio</groupId>
      <artifactId>apicurio-registry-app</artifactId>
      <version>$APICURIO_VERSION</version>
      <exclusions>
        <exclusion><groupId>io.apicurio</groupId><artifactId>apicurio-common-app-components-config-index</artifactId></exclusion>
        <exclusion><groupId>com.github.everit-org.json-schema</groupId><artifactId>org.everit.json.schema</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>com.github.erosb</groupId>
      <artifactId>everit-json-schema</artifactId>
      <version>$EVERIT_VERSION</version>
    </dependency>
  </dependencies>
  <build>
    <finalName>apicurio-registry</finalName>
    <plugins>
      <plugin>
        <groupId>io.quarkus</groupId>
        <artifactId>quarkus-maven-plugin</artifactId>
        <version>$QUARKUS_VERSION</version>
        <executions><execution><goals><goal>build</goal></goals></execution></executions>
      </plugin>
    </plugins>
  </build>
</project>
EOF
  cat >"$work/src/main/java/gress/registry/EmptyDynamicConfigList.java" <<'EOF'
package gress.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.inject.Produces;
import javax.inject.Singleton;

/** Stands in for the build-time index of runtime-editable properties (its Quarkus deployment module is not on
 *  Maven Central): no property is editable at run time; everything else is Apicurio's own code. */
public class EmptyDynamicConfigList {
    @Produces
    @Singleton
    DynamicConfigPropertyList dynamicConfigPropertyList() {
        return new DynamicConfigPropertyList(List.of());
    }
}
EOF
  # The app jar carries no bean index: have Quarkus index it so its beans and REST resources are found.
  cat >"$work/src/main/resources/application.properties" <<'EOF'
quarkus.index-dependency.registry-app.group-id=io.apicurio
quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app
EOF
  # Offline first (everything may already be in ~/.m2), then online. The parent's checkstyle/enforcer need
  # files of Apicurio's own source tree: skip them, and javadoc/sources jars, which nobody uses here.
  local args=(-B -f "$work/pom.xml" -DskipTests -Dcheckstyle.skip -Denforcer.skip -Dmaven.javadoc.skip
              -Dmaven.source.skip package)
  mvn -o -q "${args[@]}" >"$work/mvn.log" 2>&1 || mvn "${args[@]}" >>"$work/mvn.log" 2>&1 \
    || { tail -n 40 "$work/mvn.log" >&2; die "Maven could not build Apicurio Registry (log: $work/mvn.log)"; }
  rm -rf "$HOME_DIR"
  mkdir -p "$HOME_DIR"
  mv "$work/target/apicurio-registry-runner.jar" "$work/target/lib" "$HOME_DIR/"
  rm -rf "$work"
  touch "$HOME_DIR/.complete"
}

up() {
  if live_pid >/dev/null; then
    log "already running (pid $(cat "$PIDFILE"))"
  else
    if port_in_use "$PORT"; then
      die "port $PORT is already in use by another process; pick another with GRESS_REGISTRY_PORT"
    fi
    build
    mkdir -p "$REG_RUN"
    log "starting Apicurio Registry $APICURIO_VERSION on $HOST:$PORT (in-memory storage)"
    rm -f "$PIDFILE"
    # Own session, no stdin, and 9>&- so it never holds scripts/services' lock.
    # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" java -Xms64m -Xmx384m -XX:+UseSerialGC \
      -XX:TieredStopAtLevel=1 -Dquarkus.http.host=$HOST -Dquarkus.http.port="$PORT" \
      -Dquarkus.log.level=INFO -Dquarkus.log.category.\"io.apicurio\".level=INFO \
      -Dquarkus.datasource.jdbc.min-size=1 -Dquarkus.datasource.jdbc.initial-size=1 \
      -jar "$HOME_DIR/apicurio-registry-runner.jar" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
    for _ in $(seq 50); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
  fi
  local deadline=$((SECONDS + 120))
  until ready; do
    if ! live_pid >/dev/null; then tail -n 30 "$LOGFILE" >&2; die "registry exited during startup"; fi
    if [ $SECONDS -ge $deadline ]; then tail -n 30 "$LOGFILE" >&2; die "registry not ready after 120s"; fi
    sleep 0.5
  done
  log "ready at $(url)"
}

down() {
  local pid
  if pid=$(live_pid); then
    log "stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "did not stop in 20s; killing"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$PIDFILE"
}

status() {
  local pid
  if pid=$(live_pid) && ready; then
    echo "registry up  $HOST:$PORT (pid $pid, Apicurio Registry $APICURIO_VERSION, Confluent API $(url))"
  else
    echo "registry down $HOST:$PORT"; return 3
  fi
}

case ${1:-} in
  up) up; echo "export GRESS_SCHEMA_REGISTRY_URL=$(url)" ;;
  down) down ;;
  status) status ;;
  env) echo "export GRESS_SCHEMA_REGISTRY_URL=$(url)" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
