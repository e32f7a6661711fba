#!/usr/bin/env bash
# Build the services image a second time from scratch (--no-cache) with the
# same base, lock and wheelhouse as docker/build-images.sh, and compare it with
# queue-lab/app:latest: the installed distributions (name==version), and a
# sha256 over every file of /opt/venv and /app (contents and paths; pyc files
# are hash-based, so they compare too). Layer digests are printed, not
# compared: they include file times, which differ between builds.
# Exits 1 when the installed sets or the file digests differ.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${APP_IMAGE:-queue-lab/app:latest}
docker image inspect "$ref" >/dev/null 2>&1 || { echo "check-reproducible: build $ref first (docker/build-images.sh)" >&2; exit 1; }
base=$(docker image inspect -f '{{index .Config.Labels "queue-lab.base"}}' "$ref")
base=${base:-queue-lab/python-base:bookworm}
lock_sha=$(sha256sum docker/requirements.lock | cut -d' ' -f1)
again=queue-lab/app:repro-check
if docker buildx version >/dev/null 2>&1; then builder=(docker build); else builder=(env DOCKER_BUILDKIT=0 docker build); fi
"${builder[@]}" -q --no-cache -f docker/Dockerfile --build-arg BASE_IMAGE="$base" --build-arg PIP_OFFLINE=1 \
  --build-arg LOCK_SHA256="$lock_sha" -t "$again" . >/dev/null 2>&1
trap 'docker rmi "$again" >/dev/null 2>&1 || true' EXIT

inventory() {
  docker run --rm --network none --entrypoint python "$1" -c '
import hashlib, importlib.metadata as md, os
print("\n".join(sorted(f"{d.name}=={d.version}" for d in md.distributions())))
h = hashlib.sha256()
for top in ("/opt/venv", "/app"):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(p.encode() + b"\0")
            if not os.path.islink(p):
                h.update(open(p, "rb").read())
print("files sha256:", h.hexdigest())'
}
a=$(inventory "$ref")
b=$(inventory "$again")
echo "check-reproducible: $ref vs a --no-cache rebuild ($again), base $base"
echo "  installed distributions: $(grep -c '==' <<<"$a") | files: $(tail -n 1 <<<"$a")"
echo "  rebuild:                 $(grep -c '==' <<<"$b") | files: $(tail -n 1 <<<"$b")"
for img in "$ref" "$again"; do
  echo "  $img: id $(docker image inspect -f '{{.Id}}' "$img" | cut -c8-19), size $(docker image inspect -f '{{.Size}}' "$img") B, last layer $(docker image inspect -f '{{range .RootFS.Layers}}{{.}} {{end}}' "$img" | awk '{print substr($NF, 8, 12)}')"
done
if [ "$a" = "$b" ]; then
  echo "check-reproducible: SAME installed set and file contents"
else
  diff <(echo "$a") <(echo "$b") >&2 || true
  echo "check-reproducible: DIFFERENT" >&2
  exit 1
fi
