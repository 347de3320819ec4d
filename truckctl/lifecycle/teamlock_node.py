"""The node side of the team lock and the shared run history: one POSIX sh script, truckctl's own.

Why a script sent with every call (not a helper installed by a role): the lock must work before the
truck tier exists on a node (the first `up` on fresh nodes, the lab right after `lab up`), and a
helper installed on the node would be node content run as code. The script needs only what a bare
Debian has (sh, mkdir, mv, head, tr, date and flock(1) of util-linux, which is Essential).

Mechanism: every operation is one short critical section under `flock` on a root-owned file
(<root>/locks/<stage>.mutex, root 0700 directories): the kernel drops a flock when its process
dies, so a dropped SSH connection can never leave it held. Inside it the lock is a directory
<root>/locks/<stage>/ with `token` (the holder's random capability), `expires` (node clock, epoch
seconds) and `holder.json` (who: host, user, command, run, start), replaced as a whole by rename.
Take is a compare-and-swap: free, expired or already ours -> ours; else the holder is shown.
Renew and release succeed only with the holder's token. Expiry is judged by the node's clock
alone, so the operators' clocks never matter.

What comes back is bounded and is data: one status line, then at most one line of holder JSON
(4 KiB) or of run summaries (50 x 8 KiB), which truckctl parses as bounded JSON and validates.
Every argument is checked by the script too (stage name, hex token, digits), and is passed quoted.
"""

from __future__ import annotations

import shlex

NODE_ROOT = "/var/lib/truckctl"
HOLDER_MAX = 4096
RUN_MAX = 8192
KEEP_RUNS = 50
REPLY_MAX = 2 * HOLDER_MAX + 256 + KEEP_RUNS * (RUN_MAX + 1)  # the most a node's answer to one call may be

SCRIPT = r"""
set -u
op=$1 stage=$2 arg=$3 lease=$4 root=$5 now=${6:-}
case $stage in stage-[1-9]|stage-[1-9][0-9]) ;; *) echo "error bad-stage"; exit 0;; esac
case $arg in ''|*[!0-9A-Za-z-]*) echo "error bad-argument"; exit 0;; esac
case $lease in ''|*[!0-9]*) echo "error bad-lease"; exit 0;; esac
case $root in /*) ;; *) echo "error bad-root"; exit 0;; esac
[ -n "$now" ] || now=$(date +%s)
umask 077
locks=$root/locks runs=$root/runs/$stage
[ -d "$runs" ] || { mkdir -p "$locks" "$runs" && chmod 700 "$root" "$locks" "$root/runs"; } ||
  { echo "error cannot-create"; exit 0; }
exec 9>>"$locks/$stage.mutex" || { echo "error cannot-open"; exit 0; }
flock -w 10 9 || { echo "busy $now 0"; exit 0; }
lock=$locks/$stage
cur_token='' cur_exp=0 line=''
if [ -d "$lock" ]; then  # shell builtins only on the common path: every fork costs on a busy node
  { IFS= read -r cur_token < "$lock/token"; } 2>/dev/null
  { IFS= read -r line < "$lock/expires"; } 2>/dev/null
  case $line in ''|*[!0-9]*) ;; *) [ ${#line} -gt 12 ] || cur_exp=$line;; esac
fi
holder() { [ -f "$lock/holder.json" ] && head -c __HOLDER_MAX__ "$lock/holder.json" | tr -d '\n\r'; echo; }
mine() { [ -d "$lock" ] && [ "$cur_token" = "$arg" ]; }
live() { [ -d "$lock" ] && [ "$cur_exp" -gt "$now" ]; }
lock_state() {  # the lock as `read` answers it: state line, holder line
  if live; then echo "held $now $cur_exp"; elif [ -d "$lock" ]; then echo "expired $now $cur_exp"
  else echo "free $now 0"; fi; holder
}
run_history() {  # the recorded runs as `history` answers them: status line, one line per run
  echo "history $now 0"
  ls -1 "$runs" | grep -E '^[0-9A-Za-z-]+\.json$' | sort | tail -n __KEEP_RUNS__ |
    while read -r name; do head -c __RUN_MAX__ "$runs/$name" | tr -d '\n\r'; echo; done
}
record() {  # stdin -> one bounded line in runs/, the newest __KEEP_RUNS__ kept
  head -c __RUN_MAX__ | tr -d '\n\r' > "$runs/.$arg.tmp" && echo >> "$runs/.$arg.tmp" &&
    mv -f "$runs/.$arg.tmp" "$runs/$arg.json"
  ls -1 "$runs" | grep -E '^[0-9A-Za-z-]+\.json$' | sort | head -n -__KEEP_RUNS__ |
    while read -r old; do rm -f "$runs/$old"; done
}
case $op in
take)
  if live && ! mine; then echo "held $now $cur_exp"; holder; exit 0; fi
  state=taken; if [ -d "$lock" ] && ! mine; then state=taken-expired; fi
  new=$locks/.$stage.new; [ ! -e "$new" ] || rm -rf "$new"; mkdir "$new" || { echo "error cannot-create"; exit 0; }
  printf '%s\n' "$arg" > "$new/token"; echo $((now + lease)) > "$new/expires"
  line=''; IFS= read -r line || true; [ ${#line} -le __HOLDER_MAX__ ] || line=''
  printf '%s' "$line" > "$new/holder.json"
  echo "$state $now $((now + lease))"; if [ $state = taken-expired ]; then holder; else echo; fi
  [ ! -d "$lock" ] || rm -rf "$lock"; mv "$new" "$lock";;
renew)
  if mine; then echo $((now + lease)) > "$lock/expires"
    echo "renewed $now $((now + lease))"; echo
  else echo "lost $now $cur_exp"; holder; fi;;
release)
  if mine; then rm -rf "$lock"; echo "released $now 0"; echo; else echo "not-held $now $cur_exp"; holder; fi;;
read)
  lock_state;;
force)
  if [ -d "$lock" ]; then echo "forced $now $cur_exp"; holder; rm -rf "$lock"; else echo "free $now 0"; echo; fi
  record;;
record)
  record; echo "recorded $now 0"; echo;;
history)
  run_history;;
team)  # what `status` asks: `read`'s two lines, then `history`'s answer (one SSH call instead of two)
  lock_state; run_history;;
*) echo "error bad-op";;
esac
""".replace("__HOLDER_MAX__", str(HOLDER_MAX)).replace("__RUN_MAX__", str(RUN_MAX)).replace(
    "__KEEP_RUNS__", str(KEEP_RUNS))

OPS = ("take", "renew", "release", "read", "force", "record", "history", "team")


def node_argv(op: str, stage: str, arg: str, lease: int, root: str = NODE_ROOT, now: int | None = None) -> list[str]:
    """The script and its arguments as an argv (`sh -c SCRIPT teamlock OP ...`); `now` only in tests."""
    if op not in OPS:
        raise ValueError(f"unknown team lock operation {op!r}")
    return ["sh", "-c", SCRIPT, "teamlock", op, stage, arg or "-", str(int(lease)), root,
            *([str(int(now))] if now is not None else [])]


def node_command(op: str, stage: str, arg: str, lease: int, root: str = NODE_ROOT, sudo: bool = False) -> str:
    """The same as one remote command line for SSH (each word quoted; `sudo -n` for a non-root user)."""
    argv = node_argv(op, stage, arg, lease, root)
    return " ".join(shlex.quote(word) for word in (["sudo", "-n", *argv] if sudo else argv))
