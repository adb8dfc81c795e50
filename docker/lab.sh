#!/usr/bin/env bash
# The lab in containers (compose.yaml beside this script): FreeSWITCH, Asterisk, Redis and two
# callctl nodes on the host's network, bound to 127.0.0.1. Linux only (host networking).
#
#   lab.sh images        build the lab's images (making base images from Debian's packages
#                        when no registry has them)
#   lab.sh up            the images, the nodes' plan (docker/.lab/plan.yaml), every service
#                        started and healthy; then where to look
#   lab.sh down          stop and remove what up started (containers, network, Redis's volume)
#   lab.sh examples      place the seeds' worked examples through the running lab (sipp)
#   lab.sh compose ARGS  docker compose with the lab's file and project
#
# Environment (defaults):
#   CALLCTL_SHARED_LAB    the prebuilt media servers (media-servers.tar.xz)   ../shared/lab
#   CALLCTL_MEDIA_BUILD   how the media image gets FreeSWITCH and Asterisk: prebuilt (from the
#                         archive) or source (the upstream tags; needs BuildKit and the
#                         internet)                         prebuilt when the archive is there
#   CALLCTL_BASE_IMAGE    Debian                            debian:bookworm-slim
#   CALLCTL_GO_IMAGE      Go, to build callctl              golang:1.25-bookworm
#   CALLCTL_STATIC_IMAGE  callctl's runtime                 gcr.io/distroless/static-debian12:nonroot
#                         Unset, each is pulled, or made here when it cannot be: Debian with
#                         debootstrap (from CALLCTL_DEBIAN_MIRROR, default apt's mirror), Go from
#                         this machine's Go, the runtime from Debian's ca-certificates and tzdata.
#   CALLCTL_LAB_TIMEOUT   seconds up waits for every service to be healthy   240
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${CALLCTL_SHARED_LAB:-$REPO/../shared/lab}
STATE=$HERE/.lab
SERVICES="redis freeswitch asterisk callctl2 callctl1"

say() { printf 'docker-lab: %s\n' "$*"; }
die() { printf 'docker-lab: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed (Debian: apt-get install docker.io docker-compose)"
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  die "neither docker compose nor docker-compose is installed"
fi
compose() { "${COMPOSE[@]}" -f "$HERE/compose.yaml" --project-directory "$HERE" "$@"; }

have() { docker image inspect "$1" >/dev/null 2>&1; }
pullable() { have "$1" || docker pull -q "$1" >/dev/null 2>&1; }

# apt_mirror: the Debian mirror apt uses here, for debootstrap.
apt_mirror() {
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)
  [ -n "$m" ] || m=$(grep -hsE '^deb +(\[[^]]*\] +)?[a-z]+://[^ ]+ +bookworm ' /etc/apt/sources.list 2>/dev/null |
    sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# timed NAME COMMAND...: runs COMMAND with its output in .lab/NAME.log; says how long it took.
timed() {
  local name=$1 t0=$SECONDS
  shift
  mkdir -p "$STATE"
  if ! "$@" >"$STATE/$name.log" 2>&1; then
    tail -30 "$STATE/$name.log" >&2
    die "$name failed (the whole output: $STATE/$name.log)"
  fi
  say "$name: $((SECONDS - t0)) s"
}

make_debian() {
  command -v debootstrap >/dev/null || die "no $1 and no registry: install debootstrap (apt-get install debootstrap) to make it"
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root to make $1"
  local root mirror
  mirror=${CALLCTL_DEBIAN_MIRROR:-$(apt_mirror)}
  root=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$root" "$mirror" || { rm -rf "$root"; return 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$1"
  rm -rf "$root"
}

# make_golang: this machine's Go on Debian, trusting what this machine trusts (its CA bundle:
# go mod download reaches the module proxy through whatever this machine's TLS goes through).
make_golang() {
  command -v go >/dev/null || die "no $1 and no registry: Go 1.25 or newer is needed on this machine to make it"
  local goroot ctx rc
  goroot=$(go env GOROOT)
  ctx=$(mktemp -d)
  cat >"$ctx/Dockerfile" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY go /usr/local/go
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GOTOOLCHAIN=local
EOF
  tar -c -C "$ctx" Dockerfile -C /etc/ssl/certs ca-certificates.crt -C "$(dirname "$goroot")" \
    --transform "s#^$(basename "$goroot")#go#" "$(basename "$goroot")" |
    docker build --network host --force-rm -t "$1" --build-arg BASE_IMAGE="$BASE" -
  rc=$?
  rm -rf "$ctx"
  return $rc
}

# make_static: what callctl needs of distroless/static: CA certificates, time zones, a nonroot
# user (65532) with a home, /tmp.
make_static() {
  local ctx
  ctx=$(mktemp -d)
  docker build --network host --force-rm -t "$1" --build-arg BASE_IMAGE="$BASE" -f - "$ctx" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS rootfs
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates tzdata \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/usr/share /rootfs/tmp /rootfs/home/nonroot \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && cp -a /usr/share/zoneinfo /rootfs/usr/share/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/home/nonroot
FROM scratch
COPY --from=rootfs /rootfs/ /
USER 65532:65532
WORKDIR /home/nonroot
EOF
  local rc=$?
  rm -rf "$ctx"
  return $rc
}

# base_images sets BASE, GO and STATIC: upstream's when they are here or can be pulled, else
# made here (once: later runs find them).
base_images() {
  BASE=${CALLCTL_BASE_IMAGE:-debian:bookworm-slim}
  if ! pullable "$BASE"; then
    [ -z "${CALLCTL_BASE_IMAGE:-}" ] || die "base image $BASE: neither here nor pullable"
    BASE=callctl-lab/debian:bookworm
    have "$BASE" || timed "base-image-debian" make_debian "$BASE"
  fi
  GO=${CALLCTL_GO_IMAGE:-golang:1.25-bookworm}
  if ! pullable "$GO"; then
    [ -z "${CALLCTL_GO_IMAGE:-}" ] || die "Go image $GO: neither here nor pullable"
    GO=callctl-lab/golang:$(go env GOVERSION 2>/dev/null || echo local)
    have "$GO" || timed "base-image-golang" make_golang "$GO"
  fi
  STATIC=${CALLCTL_STATIC_IMAGE:-gcr.io/distroless/static-debian12:nonroot}
  if ! pullable "$STATIC"; then
    [ -z "${CALLCTL_STATIC_IMAGE:-}" ] || die "runtime image $STATIC: neither here nor pullable"
    STATIC=callctl-lab/static:bookworm
    have "$STATIC" || timed "base-image-static" make_static "$STATIC"
  fi
}

images() {
  base_images
  local media=${CALLCTL_MEDIA_BUILD:-} ctx
  if [ -z "$media" ]; then
    if [ -f "$SHARED/media-servers.tar.xz" ]; then media=prebuilt; else media=source; fi
  fi
  case $media in
    prebuilt)
      [ -f "$SHARED/media-servers.tar.xz" ] || die "no $SHARED/media-servers.tar.xz: set CALLCTL_SHARED_LAB, or CALLCTL_MEDIA_BUILD=source"
      ctx=$SHARED ;;
    source) ctx=$HERE/media; say "media image from the upstream release tags: this takes a long while" ;;
    *) die "CALLCTL_MEDIA_BUILD=$media: want prebuilt or source" ;;
  esac
  local args=(--network host --force-rm --build-arg "BASE_IMAGE=$BASE")
  timed "image-media" docker build "${args[@]}" -f "$HERE/media/Dockerfile" --target "$media" -t callctl-lab/media "$ctx"
  timed "image-redis" docker build "${args[@]}" -f "$HERE/redis/Dockerfile" -t callctl-lab/redis "$HERE/redis"
  args+=(--build-arg "GO_IMAGE=$GO" --build-arg "STATIC_IMAGE=$STATIC" -f "$HERE/Dockerfile")
  # The Go build stage is tagged, so that its layers (the module download above all) stay the
  # next build's cache while the stages of earlier builds, untagged, can be dropped: each build
  # of a changed tree would otherwise leave about 1 GB behind.
  timed "image-build" docker build "${args[@]}" --target build -t callctl-lab/build "$REPO"
  timed "image-callctl" docker build "${args[@]}" --target callctl -t callctl-lab/callctl "$REPO"
  timed "image-examples" docker build "${args[@]}" --target examples -t callctl-lab/examples "$REPO"
  docker image prune -f >/dev/null || true
}

# container SERVICE: its container id ("" when it has none).
container() { compose ps -q "$1" 2>/dev/null | head -1; }

wait_healthy() {
  local deadline=$((SECONDS + ${CALLCTL_LAB_TIMEOUT:-240})) s st pending ids=()
  for s in $SERVICES; do ids+=("$s=$(container "$s")"); done
  while :; do
    pending=()
    for s in "${ids[@]}"; do
      st=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "${s#*=}" 2>/dev/null || echo missing)
      case $st in
        healthy) ;;
        unhealthy | exited | dead | missing)
          compose logs --tail 30 "${s%%=*}" >&2 || true
          die "${s%%=*} is $st" ;;
        *) pending+=("${s%%=*} ($st)") ;;
      esac
    done
    [ ${#pending[@]} -eq 0 ] && return 0
    [ $SECONDS -lt $deadline ] || die "not healthy after ${CALLCTL_LAB_TIMEOUT:-240} s: ${pending[*]}"
    sleep 1
  done
}

up() {
  local t0=$SECONDS
  images
  mkdir -p "$STATE"
  # The nodes' plan, made by labcalls from the lab plan and the secrets of .env.
  compose run --rm -T --no-deps examples plan >"$STATE/plan.yaml.new" 2>"$STATE/plan.log" ||
    { cat "$STATE/plan.log" >&2; die "making the plan failed"; }
  mv "$STATE/plan.yaml.new" "$STATE/plan.yaml"
  local t1=$SECONDS
  timed "compose-up" compose up -d
  wait_healthy
  say "every service healthy $((SECONDS - t1)) s after compose up ($((SECONDS - t0)) s in all)"
  local c="${COMPOSE[*]} -f docker/compose.yaml" tok
  tok=$(sed -n 's/^CALLCTL_TOKEN=//p' "$HERE/.env")
  cat <<EOF

The lab runs on 127.0.0.1: FreeSWITCH fs1 (plan server srv11; ESL 9021, SIP 6060), Asterisk ast1
(srv12; ARI 9088, SIP 6080), Redis (7379), callctl1 (API 10464) and callctl2 (API 10465).
FreeSWITCH hands calls to callctl1 first; callctl2 holds the Asterisk application.

  the calls, one line per decision:  $c logs -f callctl1 callctl2 | grep call=
  live calls:                        $c exec -e CALLCTL_TOKEN=$tok callctl1 callctl calls --api 127.0.0.1:10464
  channels against the limits:       $c exec -e CALLCTL_TOKEN=$tok callctl1 callctl counts --api 127.0.0.1:10464
  call records as they come:         $c exec callctl1 callctl records --config /etc/callctl/node.yaml --follow
                                     (with callctl here: CALLCTL_TOKEN from docker/.env, callctl calls --api 127.0.0.1:10464)
  metrics:                           curl -s 127.0.0.1:10464/metrics | grep ^callctl_
  readiness:                         curl -s 127.0.0.1:10464/readyz 127.0.0.1:10465/readyz
  place the seeds' worked examples:  make docker-lab-examples
  stop and remove it:                make docker-lab-down
EOF
}

down() {
  timed "compose-down" compose --profile examples down -v --remove-orphans
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  images) images ;;
  up) up ;;
  down) down ;;
  examples) compose run --rm -T examples examples ;;
  compose) compose "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
