"""Peak resident memory of the current process, for benchmarks that run in a child process of
their own. Kept free of imports, so that a child importing it measures nothing of this module."""


def peak_rss() -> int:
    """In bytes. VmHWM, not ru_maxrss: after fork and exec, ru_maxrss still counts the parent's
    pages."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
