"""The peak resident memory of this process, in MiB, for the benchmarks' memory tables.

Linux's `getrusage(RUSAGE_SELF).ru_maxrss` survives `exec`: a child started by
a parent that already holds 2 GiB reports at least the parent's peak. The
kernel's `VmHWM` (`/proc/self/status`) belongs to the new program's memory
and starts again at `exec`, so it is read where it exists.
"""

import resource


def peak_mib():
    """The high-water mark of this process's resident set size, in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
