# expect: passed
# needs: bwrap
# Passes only if cgroups, /sys, /etc, /var and the kernel's knobs are out of reach.
import ctypes
import os

written = []
for path in [
    "/sys/fs/cgroup/pids/cgroup.procs",
    "/sys/fs/cgroup/memory/cgroup.procs",
    "/sys/fs/cgroup/unified/cgroup.procs",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/proc/sysrq-trigger",
    "/etc/hrm-hostile",
    "/var/tmp/hrm-hostile",
    "/usr/hrm-hostile",
]:
    try:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        written.append(path)
    except OSError:
        pass
for folder in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"]:
    try:
        os.mkdir(os.path.join(folder, "hrm-hostile-escape"))
        written.append(folder)
    except OSError:
        pass
assert ctypes.CDLL(None).mount(b"none", b"/usr", b"tmpfs", 0, None) != 0, "mounted over /usr"
assert not written, written
