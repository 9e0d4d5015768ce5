#!/bin/sh
# Runs as root on a real kernel (this host or inside the VM rig, busybox sh is enough).
# Builds one cgroup with a process that writes 8 MiB into a private tmpfs, then prints
# the kernel's files between "=== <name> ===" markers on stdout. capture.sh splits them.
set -e
dump() { echo "=== $1 ==="; cat "$2"; }
v2=0
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.subtree_control; then
  v2=1; base=/sys/fs/cgroup
else
  base=/sys/fs/cgroup/memory
fi
cg=$base/shmwatch-capture-$$
mkdir "$cg"
mkdir -p /tmp/shmwatch-capture-$$
mount -t tmpfs -o size=64m tmpfs /tmp/shmwatch-capture-$$
if [ $v2 = 1 ]; then echo 256M > "$cg/memory.max"; else echo 256M > "$cg/memory.limit_in_bytes"; fi
sh -c "echo \$\$ > $cg/cgroup.procs; exec dd if=/dev/zero of=/tmp/shmwatch-capture-$$/blob bs=1M count=8 2>/dev/null"
dump self.mountinfo /proc/self/mountinfo
dump proc.cgroups /proc/cgroups
dump osrelease /proc/sys/kernel/osrelease
if [ $v2 = 1 ]; then
  for f in memory.stat memory.events memory.events.local memory.pressure memory.max memory.current memory.peak cgroup.stat cgroup.controllers; do
    [ -f "$cg/$f" ] && dump "cg.$f" "$cg/$f"
  done
  for f in cgroup.stat memory.stat memory.pressure cgroup.controllers cgroup.subtree_control; do
    [ -f "$base/$f" ] && dump "root.$f" "$base/$f"
  done
else
  for f in memory.stat memory.limit_in_bytes memory.usage_in_bytes memory.max_usage_in_bytes memory.failcnt memory.oom_control memory.kmem.usage_in_bytes memory.kmem.limit_in_bytes; do
    [ -f "$cg/$f" ] && dump "cg.$f" "$cg/$f"
  done
  for f in memory.stat memory.limit_in_bytes memory.usage_in_bytes memory.oom_control; do
    [ -f "$base/$f" ] && dump "root.$f" "$base/$f"
  done
fi
rm -f /tmp/shmwatch-capture-$$/blob
umount /tmp/shmwatch-capture-$$
rmdir /tmp/shmwatch-capture-$$
rmdir "$cg" 2>/dev/null || { sleep 1; rmdir "$cg"; }
