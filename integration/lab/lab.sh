#!/usr/bin/env bash
# The real-server lab of callctl's test suite: FreeSWITCH fs1 + fs2 and Asterisk ast1 + ast2 on
# 127.0.0.1, configured from the templates beside this script (see README.md here).
#
#   lab.sh install                 install what the lab needs (the prebuilt servers when
#                                  ../shared/lab is beside the repository, and sipp)
#   lab.sh start [instances]       render the configuration and start (default: all four)
#   lab.sh stop [instances]        stop what start started
#   lab.sh kill INSTANCE           kill an instance at once (SIGKILL), as a crash would
#   lab.sh status                  which instances run
#   lab.sh env                     the CALLCTL_IT_* variables of the suite, as shell exports
#   lab.sh exec INSTANCE           render INSTANCE's configuration and run it in the foreground
#                                  (what a container runs: docker/compose.yaml)
#   lab.sh ready INSTANCE          exit 0 when INSTANCE answers (its ESL or ARI is up)
#   lab.sh run -- COMMAND...       start what is not running, run COMMAND with the variables,
#                                  stop what it started (also when COMMAND fails); without
#                                  installed servers COMMAND runs without them
#
# Where things are (environment, with defaults):
#   CALLCTL_LAB_FREESWITCH   FreeSWITCH prefix (bin/freeswitch)          /opt/lab/freeswitch
#   CALLCTL_LAB_FS_MODDIR    its modules             <prefix>/lib/freeswitch/mod or <prefix>/mod
#   CALLCTL_LAB_ASTERISK     Asterisk prefix (sbin/asterisk)             /opt/lab/asterisk
#   CALLCTL_LAB_AST_MODDIR   its modules             <prefix>/lib/asterisk/modules
#   CALLCTL_LAB_AST_DATADIR  its data directory      <prefix>/var/lib/asterisk
#   CALLCTL_LAB_DIR          the instances' configuration, logs and PIDs   /tmp/callctl-lab
#   CALLCTL_LAB_PORT_OFFSET  added to every port, for a second lab beside the first   0
#   CALLCTL_LAB_ESL_PASSWORD the FreeSWITCH event sockets' password             ClueCon
#   CALLCTL_LAB_ARI_USER, CALLCTL_LAB_ARI_PASSWORD  the Asterisk ARI user       ari, ari
#   CALLCTL_LAB_SOCKETS      where FreeSWITCH hands calls to callctl: host:port, comma-separated,
#                            tried in order                                   18084, then 18086
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
FS=${CALLCTL_LAB_FREESWITCH:-/opt/lab/freeswitch}
AST=${CALLCTL_LAB_ASTERISK:-/opt/lab/asterisk}
DIR=${CALLCTL_LAB_DIR:-/tmp/callctl-lab}
O=${CALLCTL_LAB_PORT_OFFSET:-0}
ESL_PASSWORD=${CALLCTL_LAB_ESL_PASSWORD:-ClueCon}
ARI_USER=${CALLCTL_LAB_ARI_USER:-ari}
ARI_PASSWORD=${CALLCTL_LAB_ARI_PASSWORD:-ari}
SOCKETS=${CALLCTL_LAB_SOCKETS:-}
ARI_APP=controller
ALL="fs1 fs2 ast1 ast2"

case $O in ''|*[!0-9]*) echo "lab: CALLCTL_LAB_PORT_OFFSET=$O is not a number" >&2; exit 2;; esac
# The secrets end up in sed expressions and XML attributes: keep them plain.
for v in "$ESL_PASSWORD" "$ARI_USER" "$ARI_PASSWORD"; do
  case $v in '' | *[!A-Za-z0-9._-]*) echo "lab: passwords and the ARI user are letters, digits, . _ - (got '$v')" >&2; exit 2 ;; esac
done
case $SOCKETS in *[!0-9a-zA-Z.:,-]*) echo "lab: CALLCTL_LAB_SOCKETS=$SOCKETS is not a list of host:port" >&2; exit 2 ;; esac

# Ports: the recorded lab's (../shared/traces) plus the offset.
port() { echo $(($1 + O)); }
esl_port() { case $1 in fs1) port 8021;; fs2) port 8022;; esac; }
ari_port() { case $1 in ast1) port 8088;; ast2) port 8089;; esac; }
sip_port() { case $1 in fs1) port 5060;; fs2) port 5062;; ast1) port 5080;; ast2) port 5082;; esac; }
# Both FreeSWITCH servers hand their calls to the same callctl nodes (as in a
# cluster): the first node, then the second when the first does not answer.
socket_port() { port 18084; }
socket2_port() { port 18086; }
server_of() { case $1 in fs1|ast1) echo srv11;; fs2|ast2) echo srv12;; esac; }
# RTP: the recorded lab's ranges (5000 ports each from 20000) without an offset; a lab with an
# offset takes 1000 ports per instance from 40000 + 4 x (offset mod 5000), so labs beside each
# other (offsets 1000, 2000, 3000...) do not share ports.
rtp_start() {
  local i
  if [ "$O" -eq 0 ]; then
    case $1 in fs1) echo 20000;; fs2) echo 25000;; ast1) echo 30000;; ast2) echo 35000;; esac
    return
  fi
  case $1 in fs1) i=0;; fs2) i=1;; ast1) i=2;; ast2) i=3;; esac
  echo $((40000 + (O % 5000) * 4 % 20000 + i * 1000))
}
rtp_end() { if [ "$O" -eq 0 ]; then echo $(($(rtp_start "$1") + 4999)); else echo $(($(rtp_start "$1") + 999)); fi; }
# socket_actions INSTANCE: the dialplan's socket applications, one per address, in order.
socket_actions() {
  local a out="" list=${SOCKETS:-127.0.0.1:$(socket_port "$1"),127.0.0.1:$(socket2_port "$1")}
  for a in ${list//,/ }; do
    out="${out:+$out\n        }<action application=\"socket\" data=\"$a async full\"/>"
  done
  printf '%s' "$out"
}
# The suite's own SIP peers (sipp), from one base: callers base..base+5 (phones), PSTN callers
# base+6 and base+7, the SIP phones' UAS base+21, the PSTN's far end base+22, the transferring
# phone base+23.
SIPP_BASE=$(port 5070)

fs_moddir() {
  if [ -n "${CALLCTL_LAB_FS_MODDIR:-}" ]; then echo "$CALLCTL_LAB_FS_MODDIR"; return; fi
  for d in "$FS/lib/freeswitch/mod" "$FS/mod" /usr/lib/freeswitch/mod; do [ -d "$d" ] && { echo "$d"; return; }; done
  echo "$FS/lib/freeswitch/mod"
}
ast_sbin() { if [ -x "$AST/sbin/asterisk" ]; then echo "$AST/sbin"; else echo "$AST/bin"; fi; }
ast_moddir() {
  if [ -n "${CALLCTL_LAB_AST_MODDIR:-}" ]; then echo "$CALLCTL_LAB_AST_MODDIR"; return; fi
  for d in "$AST/lib/asterisk/modules" "$AST/lib64/asterisk/modules" /usr/lib/x86_64-linux-gnu/asterisk/modules; do
    [ -d "$d" ] && { echo "$d"; return; }
  done
  echo "$AST/lib/asterisk/modules"
}
ast_datadir() {
  if [ -n "${CALLCTL_LAB_AST_DATADIR:-}" ]; then echo "$CALLCTL_LAB_AST_DATADIR"; return; fi
  for d in "$AST/var/lib/asterisk" /usr/share/asterisk; do [ -d "$d" ] && { echo "$d"; return; }; done
  echo "$AST/var/lib/asterisk"
}

have_fs() { [ -x "$FS/bin/freeswitch" ] && [ -x "$FS/bin/fs_cli" ]; }
have_ast() { [ -x "$(ast_sbin)/asterisk" ]; }
installed() { have_fs && have_ast; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
pidfile() { echo "$DIR/$1/run/lab.pid"; }

matchlist() { # first count -> "match = 127.0.0.1:p" lines
  local p=$1 n=$2 out=""
  for _ in $(seq 1 "$n"); do out="${out}match = 127.0.0.1:$p\n"; p=$((p + 1)); done
  printf '%s' "$out"
}

# render SRC DST INSTANCE: copies a template tree, filling in the @NAME@ placeholders.
render() {
  local src=$1 dst=$2 i=$3
  rm -rf "$dst" && mkdir -p "$dst" && cp -a "$src/." "$dst/" && chmod -R u+w "$dst"
  local sock=${SOCKETS:-127.0.0.1:$(socket_port "$i"),127.0.0.1:$(socket2_port "$i")}
  local caller_match pstn_match
  caller_match=$(matchlist "$SIPP_BASE" 6)
  pstn_match=$(matchlist $((SIPP_BASE + 6)) 2)"match = 127.0.0.1:$((SIPP_BASE + 22))"
  find "$dst" -type f -print0 | xargs -0 sed -i \
    -e "s#@INSTANCE@#$i#g" -e "s#@SERVER@#$(server_of "$i")#g" -e "s#@DIR@#$DIR/$i#g" \
    -e "s#@ESL_PORT@#$(esl_port "$i")#g" -e "s#@ESL_PASSWORD@#$ESL_PASSWORD#g" \
    -e "s#@ARI_PORT@#$(ari_port "$i")#g" -e "s#@ARI_USER@#$ARI_USER#g" -e "s#@ARI_PASSWORD@#$ARI_PASSWORD#g" \
    -e "s#@ARI_APP@#$ARI_APP#g" -e "s#@SIP_PORT@#$(sip_port "$i")#g" -e "s#@SOCKET@#$sock#g" \
    -e "s#@SOCKET_ACTIONS@#$(socket_actions "$i")#g" \
    -e "s#@RTP_START@#$(rtp_start "$i")#g" -e "s#@RTP_END@#$(rtp_end "$i")#g" \
    -e "s#@FS1_SIP_PORT@#$(sip_port fs1)#g" -e "s#@FS2_SIP_PORT@#$(sip_port fs2)#g" \
    -e "s#@AST1_SIP_PORT@#$(sip_port ast1)#g" -e "s#@AST2_SIP_PORT@#$(sip_port ast2)#g" \
    -e "s#@PSTN_SIP_PORT@#$((SIPP_BASE + 22))#g" -e "s#@PHONES_PORT@#$((SIPP_BASE + 21))#g" \
    -e "s#@TRANSFERER_PORT@#$((SIPP_BASE + 23))#g" -e "s#@ARI_CALLER_PORT@#$((SIPP_BASE + 8))#g" \
    -e "s#@CALLER_PORTS@#$SIPP_BASE-$((SIPP_BASE + 5))#g" \
    -e "s#@PSTN_CALLER_PORTS@#$((SIPP_BASE + 6))-$((SIPP_BASE + 7))#g" \
    -e "s#@CALLER_MATCH@#$caller_match#g" -e "s#@PSTN_MATCH@#$pstn_match#g" \
    -e "s#@ENTITY@#$(printf '%02x' $((${i: -1} + O % 200)))#g" \
    -e "s#@AST_MODDIR@#$(ast_moddir)#g" -e "s#@AST_DATADIR@#$(ast_datadir)#g" -e "s#@AST_SBINDIR@#$(ast_sbin)#g"
  if grep -rl '@[A-Z0-9_]*@' "$dst" >/dev/null 2>&1; then
    echo "lab: $i: placeholders left in $(grep -rl '@[A-Z0-9_]*@' "$dst" | tr '\n' ' ')" >&2
    return 1
  fi
}

# prepare_fs / prepare_ast INSTANCE: its directories and rendered configuration; fs_argv /
# ast_argv INSTANCE set ARGV to its command line (in the foreground); ready_fs / ready_ast say
# whether it answers. start (in the background, here) and exec (in a container) share them.
prepare_fs() {
  local d=$DIR/$1
  mkdir -p "$d"/{log,db,run,storage,cache,recordings,temp,certs}
  render "$HERE/freeswitch" "$d/conf" "$1" || return 1
  rm -f "$d/db/"*.db # a fresh core database: no stale channels or registrations
  : > "$d/log/freeswitch.log"
}
fs_argv() {
  local d=$DIR/$1
  ARGV=("$FS/bin/freeswitch" -nonat -nf -nc -mod "$(fs_moddir)"
    -conf "$d/conf" -log "$d/log" -db "$d/db" -run "$d/run" -storage "$d/storage"
    -cache "$d/cache" -recordings "$d/recordings" -temp "$d/temp" -certs "$d/certs")
}
ready_fs() {
  "$FS/bin/fs_cli" -H 127.0.0.1 -P "$(esl_port "$1")" -p "$ESL_PASSWORD" -x "sofia status" 2>/dev/null | grep -q "internal.*RUNNING"
}
prepare_ast() {
  local d=$DIR/$1
  mkdir -p "$d"/{lib,log,run,spool}
  render "$HERE/asterisk" "$d/etc" "$1"
}
ast_argv() { ARGV=("$(ast_sbin)/asterisk" -f -n -C "$DIR/$1/etc/asterisk.conf"); }
ready_ast() {
  "$(ast_sbin)/asterisk" -C "$DIR/$1/etc/asterisk.conf" -rx "core waitfullybooted" >/dev/null 2>&1 &&
    curl -sf -u "$ARI_USER:$ARI_PASSWORD" "http://127.0.0.1:$(ari_port "$1")/ari/asterisk/info" >/dev/null 2>&1
}

start_one() {
  local i=$1 kind=$2 d=$DIR/$1 where
  if alive "$(pidfile "$i")"; then echo "$i: already running (pid $(cat "$(pidfile "$i")"))"; return 0; fi
  "prepare_$kind" "$i" || return 1
  "${kind}_argv" "$i"
  nohup setsid "${ARGV[@]}" </dev/null >"$d/log/stdout.log" 2>&1 &
  echo $! >"$(pidfile "$i")"
  case $kind in
    fs) where="ESL 127.0.0.1:$(esl_port "$i"), SIP 127.0.0.1:$(sip_port "$i")" ;;
    ast) where="ARI http://127.0.0.1:$(ari_port "$i")/ari, SIP 127.0.0.1:$(sip_port "$i")" ;;
  esac
  for _ in $(seq 1 120); do
    if "ready_$kind" "$i"; then
      echo "$i: up (pid $(cat "$(pidfile "$i")"), $where)"
      return 0
    fi
    alive "$(pidfile "$i")" || break
    sleep 0.5
  done
  echo "$i: FAILED to start, see $d/log/stdout.log and $d/log/$([ "$kind" = fs ] && echo freeswitch.log || echo messages.log)" >&2
  return 1
}

kind_of() { case $1 in fs1 | fs2) echo fs ;; ast1 | ast2) echo ast ;; *) return 1 ;; esac; }

stop_one() {
  local i=$1 pf pid
  pf=$(pidfile "$i")
  if ! alive "$pf"; then rm -f "$pf"; return 0; fi
  pid=$(cat "$pf")
  case $i in
    ast*) "$(ast_sbin)/asterisk" -C "$DIR/$i/etc/asterisk.conf" -rx "core stop now" >/dev/null 2>&1 || kill -TERM "$pid" ;;
    *) kill -TERM "$pid" ;;
  esac
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { echo "$i: stopped"; rm -f "$pf"; return 0; }
    sleep 0.5
  done
  echo "$i: still running after 30 s, killing $pid"
  kill -KILL "$pid" 2>/dev/null
  rm -f "$pf"
}

kill_one() {
  local pf
  pf=$(pidfile "$1")
  if ! alive "$pf"; then echo "$1: not running" >&2; return 1; fi
  kill -KILL "$(cat "$pf")"
  for _ in $(seq 1 50); do
    alive "$pf" || { rm -f "$pf"; echo "$1: killed"; return 0; }
    sleep 0.1
  done
  echo "$1: still alive after SIGKILL" >&2
  return 1
}

start() {
  local rc=0 i
  if ! installed; then
    echo "lab: FreeSWITCH ($FS) or Asterisk ($AST) is not installed: run $0 install, or set CALLCTL_LAB_FREESWITCH and CALLCTL_LAB_ASTERISK" >&2
    return 1
  fi
  for i in ${*:-$ALL}; do
    case $i in
      fs1 | fs2) start_one "$i" fs || rc=1 ;;
      ast1 | ast2) start_one "$i" ast || rc=1 ;;
      *) echo "lab: unknown instance $i" >&2; rc=2 ;;
    esac
  done
  return $rc
}

envvars() {
  cat <<EOF
export CALLCTL_IT_FS1=127.0.0.1:$(esl_port fs1) CALLCTL_IT_FS2=127.0.0.1:$(esl_port fs2)
export CALLCTL_IT_FS_PASSWORD=$ESL_PASSWORD
export CALLCTL_IT_FS1_SIP=127.0.0.1:$(sip_port fs1) CALLCTL_IT_FS2_SIP=127.0.0.1:$(sip_port fs2)
export CALLCTL_IT_ESL_LISTEN=127.0.0.1:$(socket_port) CALLCTL_IT_ESL_STANDBY=127.0.0.1:$(socket2_port)
export CALLCTL_IT_AST1=http://$ARI_USER:$ARI_PASSWORD@127.0.0.1:$(ari_port ast1)/ari CALLCTL_IT_AST2=http://$ARI_USER:$ARI_PASSWORD@127.0.0.1:$(ari_port ast2)/ari
export CALLCTL_IT_AST1_SIP=127.0.0.1:$(sip_port ast1) CALLCTL_IT_AST2_SIP=127.0.0.1:$(sip_port ast2)
export CALLCTL_IT_ARI_APP=$ARI_APP
export CALLCTL_IT_SIPP=$SIPP_BASE
export CALLCTL_IT_LAB=$HERE/lab.sh CALLCTL_LAB_DIR=$DIR CALLCTL_LAB_PORT_OFFSET=$O
export CALLCTL_LAB_FREESWITCH=$FS CALLCTL_LAB_ASTERISK=$AST
EOF
}

status() {
  local i
  for i in $ALL; do
    if alive "$(pidfile "$i")"; then echo "$i: running (pid $(cat "$(pidfile "$i")"))"; else echo "$i: stopped"; fi
  done
}

install() {
  local prebuilt=$REPO/../shared/lab/install.sh
  if [ -x "$prebuilt" ]; then
    "$prebuilt" || return 1
  elif ! installed; then
    echo "lab: no prebuilt servers beside the repository; install FreeSWITCH and Asterisk yourself and set" >&2
    echo "     CALLCTL_LAB_FREESWITCH and CALLCTL_LAB_ASTERISK (see integration/lab/README.md)" >&2
    return 1
  fi
  if ! command -v sipp >/dev/null; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends sip-tester || return 1
  fi
}

# run -- COMMAND: the suite with the lab. Instances started here are stopped here.
run() {
  local started=() i rc
  if ! installed; then
    echo "lab: real servers not installed ($FS, $AST): the real-server scenarios skip (make lab-install installs them)"
    "$@"
    return $?
  fi
  for i in $ALL; do alive "$(pidfile "$i")" || started+=("$i"); done
  stop_started() { [ ${#started[@]} -gt 0 ] && stop "${started[@]}" >/dev/null; }
  trap 'stop_started; exit 130' INT TERM
  if [ ${#started[@]} -gt 0 ] && ! start "${started[@]}"; then
    stop_started
    echo "lab: the real servers did not start" >&2
    return 1
  fi
  eval "$(envvars)"
  "$@"
  rc=$?
  stop_started
  trap - INT TERM
  return $rc
}

stop() {
  local i
  for i in ${*:-$ALL}; do stop_one "$i"; done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  install) install ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  kill) [ $# -eq 1 ] || { echo "usage: $0 kill INSTANCE" >&2; exit 2; }; kill_one "$1" ;;
  status) status ;;
  env) envvars ;;
  exec | ready)
    kind=$(kind_of "${1:-}") || { echo "usage: $0 $cmd fs1|fs2|ast1|ast2" >&2; exit 2; }
    if [ "$cmd" = ready ]; then "ready_$kind" "$1"; exit; fi
    installed || { echo "lab: FreeSWITCH ($FS) or Asterisk ($AST) is not installed" >&2; exit 1; }
    "prepare_$kind" "$1" || exit 1
    "${kind}_argv" "$1"
    exec "${ARGV[@]}"
    ;;
  run)
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { echo "usage: $0 run -- COMMAND..." >&2; exit 2; }
    run "$@"
    ;;
  *) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
