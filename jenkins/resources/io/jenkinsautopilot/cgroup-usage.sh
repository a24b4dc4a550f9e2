#!/bin/sh
# Prints what this container used, from its cgroup v2 files, in sections the shared
# library sends to jenkins-autopilot as they are:
#   === cpu.stat        (usage_usec: CPU time of every process in the container)
#   === memory.peak     (the highest memory use, bytes; kernels 5.19 and later)
#   === memory.events   (oom_kill: processes killed for memory)
#   === elapsed_ms      (how long the container has run: since its PID 1 started)
# AUTOPILOT_CGROUP_DIR overrides /sys/fs/cgroup (tests point it at sample files).
dir="${AUTOPILOT_CGROUP_DIR:-/sys/fs/cgroup}"
for f in cpu.stat memory.peak memory.events; do
    if [ -r "$dir/$f" ]; then
        echo "=== $f"
        cat "$dir/$f"
    fi
done
if [ -n "${AUTOPILOT_ELAPSED_MS:-}" ]; then
    echo "=== elapsed_ms"
    echo "$AUTOPILOT_ELAPSED_MS"
elif [ -r /proc/1/stat ] && [ -r /proc/uptime ]; then
    ticks="$(getconf CLK_TCK 2>/dev/null || echo 100)"
    # Field 22 of /proc/1/stat: PID 1's start, in clock ticks since boot. Its name
    # (field 2) may hold spaces, so count from the closing parenthesis.
    start="$(sed 's/.*) //' /proc/1/stat | cut -d' ' -f20)"
    echo "=== elapsed_ms"
    awk -v t="$ticks" -v s="$start" '{ printf "%d\n", ($1 - s / t) * 1000 }' /proc/uptime
fi
