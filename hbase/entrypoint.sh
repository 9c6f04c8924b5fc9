#!/usr/bin/env bash
# Entrypoint of the hbase image; the local stack runs the same two processes
# (scripts/localstack/services.py: hbase, hbase_thrift).
#   master              standalone HMaster (in-process region server and ZooKeeper)
#   thrift              Thrift gateway (buffered transport, binary protocol: happybase's default)
#   healthcheck-master  exit 0 once the master is initialised with a live region server
#   healthcheck-thrift  exit 0 once the Thrift port accepts connections
# Ports and the advertised host name come from the environment (HBASE_*; docker-compose.yml).
set -euo pipefail
HBASE_HOME="${HBASE_HOME:-/opt/hbase}"
CONF="$HBASE_HOME/conf"
DATA="${HBASE_DATA_DIR:-/var/lib/hbase}"
: "${HBASE_BIND_HOST:?}" "${HBASE_ZOOKEEPER_PORT:?}" "${HBASE_MASTER_PORT:?}" "${HBASE_MASTER_INFO_PORT:?}"
: "${HBASE_REGIONSERVER_PORT:?}" "${HBASE_REGIONSERVER_INFO_PORT:?}"

# The options HBase's launcher passes on JDK 17 (JDK17_OPTS in scripts/localstack/services.py).
JDK17_OPTS=(
  -Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true
  --add-modules jdk.unsupported
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-exports java.base/sun.net.dns=ALL-UNNAMED
  --add-exports java.base/sun.net.util=ALL-UNNAMED
)

render_conf() {  # [name=value ...]: container-only properties, replacing the template's
  # Same template and values as the local stack's _hbase_conf().
  export HBASE_ROOTDIR="file://$DATA/hbase" HBASE_ZK_DATADIR="$DATA/zk" HBASE_TMPDIR="$DATA/tmp"
  mkdir -p "$DATA/hbase" "$DATA/zk" "$DATA/tmp" "$DATA/logs"
  # Only the template's own ${VARS} are substituted.
  local vars site="$CONF/hbase-site.xml" kv name
  # shellcheck disable=SC2016  # a literal ${NAME} pattern
  vars="$(grep -o '\${[A-Z0-9_]*}' "$HBASE_HOME/hbase-site.xml.in" | sort -u | tr -d '\n')"
  envsubst "$vars" < "$HBASE_HOME/hbase-site.xml.in" > "$site"
  for kv in "$@"; do
    name="${kv%%=*}"
    sed -i -e "\#<name>${name}</name>#d" \
      -e "s#^</configuration>#  <property><name>${name}</name><value>${kv#*=}</value></property>\n</configuration>#" \
      "$site"
  done
  cp "$HBASE_HOME/log4j2.properties" "$CONF/log4j2.properties"
}

java_cmd() {  # heap main-class args...
  local heap="$1"
  shift
  exec java "-Xmx$heap" -XX:+UseG1GC "${JDK17_OPTS[@]}" \
    "-Dhbase.log.dir=$DATA/logs" -Dhbase.root.logger=INFO,console \
    "-Dlog4j2.configurationFile=$CONF/log4j2.properties" \
    -cp "$CONF:$HBASE_HOME/lib/*" "$@"
}

case "${1:-master}" in
  master)
    # In a container the embedded ZooKeeper must accept the Thrift container's connections:
    # it listens on every interface of this container (the network itself is internal).
    render_conf hbase.zookeeper.property.clientPortAddress=0.0.0.0
    java_cmd "${HBASE_MASTER_HEAP:-2g}" org.apache.hadoop.hbase.master.HMaster start
    ;;
  thrift)
    : "${HBASE_THRIFT_PORT:?}" "${HBASE_THRIFT_INFO_PORT:?}"
    # HBASE_BIND_HOST names the master's host (ZooKeeper quorum); the gateway itself listens on
    # this container's interfaces.
    render_conf hbase.thrift.info.bindAddress=0.0.0.0
    java_cmd "${HBASE_THRIFT_HEAP:-512m}" org.apache.hadoop.hbase.thrift.ThriftServer \
      -b 0.0.0.0 -p "$HBASE_THRIFT_PORT" --infoport "$HBASE_THRIFT_INFO_PORT" start
    ;;
  healthcheck-master)
    jmx="$(curl -fsS --max-time 5 \
      "http://${HBASE_BIND_HOST}:${HBASE_MASTER_INFO_PORT}/jmx?qry=Hadoop:service=HBase,name=Master,sub=Server")"
    grep -Eq '"masterFinishedInitializationTime" *: *[1-9]' <<<"$jmx"
    grep -Eq '"numRegionServers" *: *[1-9]' <<<"$jmx"
    ;;
  healthcheck-thrift)
    : "${HBASE_THRIFT_PORT:?}"
    exec 3<>"/dev/tcp/127.0.0.1/${HBASE_THRIFT_PORT}"
    ;;
  *)
    exec "$@"
    ;;
esac
