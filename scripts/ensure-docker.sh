#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`, so the testcontainers suite
# can run. These machines come with the docker client only: as root, install
# Debian's docker.io and start dockerd in the background as these
# machines allow it (no bridge, no iptables: containers use host networking on 127.0.0.1).
#
# Idempotent: a no-op when `docker info` already answers; when a dockerd this
# script started earlier is still coming up, it waits for it instead of
# starting a second one. Exits non-zero with the reason when it cannot.
#
# Environment: DOCKERD_LOG (default /var/log/queue-lab-dockerd.log),
#              DOCKERD_WAIT (seconds to wait for `docker info`, default 60).
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/queue-lab-dockerd.log}
WAIT=${DOCKERD_WAIT:-60}
PIDFILE=/var/run/docker.pid

say() { echo "ensure-docker: $*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}

engine_answers() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }

# alive PID NAME: a live process (not a zombie) whose command name is NAME.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$(echo "${stat##*) }" | cut -d' ' -f1)" != Z ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

if engine_answers; then
  say "docker engine already answers ($(docker info --format '{{.ServerVersion}}' 2>/dev/null || echo '?'))"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "no Docker engine answers 'docker info' and this is not root, so dockerd cannot be installed or started here; start an engine yourself"

# One at a time: two runs at once would both start a dockerd, and the second
# one exits on the first one's pidfile.
if command -v flock >/dev/null 2>&1; then
  exec 9>/var/lock/queue-lab-ensure-docker.lock
  flock -w "$((WAIT + 120))" 9 || die "another ensure-docker.sh holds /var/lock/queue-lab-ensure-docker.lock"
  if engine_answers; then
    say "docker engine answers (started by a concurrent run)"
    exit 0
  fi
fi

if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "no Docker engine and no apt-get to install Debian's docker.io"
  say "installing Debian's docker.io (apt-get update, apt-get install -y docker.io)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  # The package's maintainer scripts may try to start the service through
  # init scripts; there is no init system here, so we start dockerd below.
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null || die "apt-get install docker.io failed"
  command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH"
fi
command -v docker >/dev/null 2>&1 || die "dockerd is here but no docker client is on PATH"

running_pid=""
if [ -s "$PIDFILE" ] && alive "$(cat "$PIDFILE")" dockerd; then
  running_pid=$(cat "$PIDFILE")
else
  # Pidfiles left by an engine that died (SIGKILL, machine handed over): dockerd
  # refuses to start on its own, and waits 15 s for a dead containerd of its.
  rm -f "$PIDFILE"
  cpid=/var/run/docker/containerd/containerd.pid
  if [ -s "$cpid" ] && ! alive "$(cat "$cpid")" containerd; then rm -f "$cpid"; fi
fi

if [ -n "$running_pid" ]; then
  say "dockerd already running as pid $running_pid; waiting for it to answer"
else
  mkdir -p "$(dirname "$LOG")"
  say "starting dockerd --bridge=none --iptables=false (log: $LOG)"
  # setsid + nohup: the engine outlives this script and its shell's job control.
  setsid nohup dockerd --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null 9>&- &
  running_pid=$!
fi

deadline=$((SECONDS + WAIT))
until engine_answers; do
  if ! alive "$running_pid" dockerd && ! { [ -s "$PIDFILE" ] && alive "$(cat "$PIDFILE")" dockerd; }; then
    say "last lines of $LOG:"
    tail -n 30 "$LOG" >&2 || true
    die "dockerd (pid $running_pid) exited before 'docker info' answered"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "last lines of $LOG:"
    tail -n 30 "$LOG" >&2 || true
    die "dockerd (pid $running_pid) did not answer 'docker info' within ${WAIT}s"
  fi
  sleep 0.5
done
say "docker engine answers ($(docker info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null || echo '?')), dockerd pid $running_pid"
