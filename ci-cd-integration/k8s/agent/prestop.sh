#!/bin/sh
# The agent container's preStop hook: before Kubernetes stops the agent (an eviction, a
# node drain, a rollout, a scale-down), take this pod's Jenkins node offline so it gets no
# new build, then wait until its executors are idle so a running build can finish.
# Bounded: it gives up after AUTOPILOT_DRAIN_TIMEOUT_SECONDS (default 570, inside the pod's
# 600 s grace period) and always exits 0 so the pod can go. Needs sh and curl (both in the
# eclipse-temurin images).
#
#   JENKINS_URL      the controller, e.g. http://jenkins.jenkins.svc:8080/
#   POD_NAME         the node's name (the agent registers under its pod's name)
#   SWARM_USER       the Jenkins user (needs Agent/Disconnect to take the node offline)
#   SWARM_PASSWORD   its API token
set -u

log() { echo "prestop: $*" >&2; }

base=${JENKINS_URL%/}
node="$base/computer/$POD_NAME"
auth="${SWARM_USER:-swarm}:${SWARM_PASSWORD:-}"
timeout=${AUTOPILOT_DRAIN_TIMEOUT_SECONDS:-570}
poll=${AUTOPILOT_DRAIN_POLL_SECONDS:-5}
deadline=$(($(date +%s) + timeout))

get() { curl -fsS --max-time 10 -u "$auth" "$1"; }

# The node's state, as Jenkins prints its JSON (no spaces): idle, temporarilyOffline.
state() { get "$node/api/json?tree=idle,temporarilyOffline"; }

current=$(state) || { log "cannot read $node; stopping without draining"; exit 0; }

case $current in
*'"temporarilyOffline":false'*)
  # toggleOffline toggles: sent only while the node is online. A crumb when Jenkins has
  # a crumb issuer (requests with an API token are exempt, but a crumb does no harm).
  crumb=$(get "$base/crumbIssuer/api/json" 2>/dev/null |
    sed -n 's/.*"crumb":"\([^"]*\)".*"crumbRequestField":"\([^"]*\)".*/\2: \1/p')
  if curl -fsS --max-time 10 -u "$auth" ${crumb:+-H "$crumb"} -X POST -o /dev/null \
    "$node/toggleOffline?offlineMessage=pod%20stopping:%20finishing%20its%20build"; then
    log "took $POD_NAME offline"
  else
    log "could not take $POD_NAME offline (the user needs Agent/Disconnect); waiting anyway"
  fi
  ;;
esac

while :; do
  case $(state) in
  *'"idle":true'*)
    log "$POD_NAME is idle; stopping"
    exit 0
    ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "$POD_NAME still busy after ${timeout}s; stopping anyway"
    exit 0
  fi
  sleep "$poll"
done
