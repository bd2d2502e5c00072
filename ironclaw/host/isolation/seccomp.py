"""The sandbox's seccomp profile: an allowlist, with EPERM for everything else.

What is on the list is what a frozen CPython agent (PyInstaller bootloader, Trio,
httpx over unix sockets, SQLCipher, OpenSSL) and glibc need, and nothing that changes
the sandbox itself. Denied with EPERM, not killed: a library probing for a feature
gets an error it already handles, and the agent keeps running.

Never allowed (the spec validator checks these by name, so a careless edit of the list
cannot slip one in): see :data:`FORBIDDEN_SYSCALLS`. ``clone`` is allowed only without
namespace flags, and ``clone3`` (whose flags live in memory seccomp cannot read)
answers ENOSYS so glibc falls back to ``clone``.

Three calls are allowed only with certain arguments, each checked by the validator:
``socket`` and ``socketpair`` only for :data:`SOCKET_FAMILIES` (AF_UNIX: the agent
talks to the host's unix sockets and Trio wakes itself through a socketpair; AF_ALG,
AF_VSOCK, AF_NETLINK and the rest are kernel surface it never needs), and ``ioctl``
only for :data:`IOCTL_REQUESTS`. Both lists are what the frozen agent was seen to ask
for, under strace, through a whole conversation in a runc sandbox.
"""

from __future__ import annotations

import errno
import socket
import termios
from typing import Any

__all__ = ["ALLOWED_SYSCALLS", "ARGUMENT_FILTERED", "CLONE_NAMESPACE_FLAGS",
           "FORBIDDEN_SYSCALLS", "IOCTL_REQUESTS", "LOOPBACK_SOCKET_FAMILIES",
           "SOCKET_FAMILIES", "argument_filters", "seccomp_profile"]

# Each of these would let the agent reach past its sandbox: debug or read another
# process, change mounts or namespaces, load kernel code, or use kernel interfaces
# with a long record of escapes.
FORBIDDEN_SYSCALLS = frozenset({
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "query_module",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
    "sethostname", "setdomainname", "iopl", "ioperm", "personality",
    "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "vm86", "vm86old",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setfsuid", "setfsgid", "setgroups", "capset",
    "mbind", "set_mempolicy", "move_pages", "migrate_pages",
    "fanotify_init", "landlock_create_ruleset",
    # memfd_create then execveat runs a file that no noexec mount ever held; the agent
    # (a PyInstaller onedir, started by execve) needs neither.
    "memfd_create", "execveat",
    # The 32-bit multiplexer keeps its arguments in memory, out of seccomp's sight:
    # it would get around the socket family filter.
    "socketcall",
})

# The only socket families: the host's unix sockets, and Trio's wake-up socketpair.
SOCKET_FAMILIES = frozenset({socket.AF_UNIX})
# An MCP server with egress also gets IPv4, to reach its in-sandbox relay on 127.0.0.1:
# its network namespace has no interface but loopback, so nothing else is reachable.
LOOPBACK_SOCKET_FAMILIES = frozenset({socket.AF_UNIX, socket.AF_INET})
# ioctl requests the agent makes: FIONBIO (set a socket non-blocking), TCGETS
# (isatty, on every file Python opens), TIOCGWINSZ (the terminal size, asked of
# stdout). And FIOCLEX/FIONCLEX, not seen in the trace but reachable: CPython's
# os.set_inheritable tries them first and falls back to fcntl only on ENOTTY or
# EACCES, so EPERM would make it raise. They only flip close-on-exec, as the allowed
# fcntl does anyway.
IOCTL_REQUESTS = frozenset({termios.FIONBIO, termios.TCGETS, termios.TIOCGWINSZ,
                            termios.FIOCLEX, termios.FIONCLEX})
# Syscall -> (index of the filtered argument, the values it may take).
ARGUMENT_FILTERED: dict[str, tuple[int, frozenset[int]]] = {
    "socket": (0, SOCKET_FAMILIES),
    "socketpair": (0, SOCKET_FAMILIES),
    "ioctl": (1, IOCTL_REQUESTS),
}

ALLOWED_SYSCALLS = (
    # files and directories
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "open", "openat", "openat2", "close", "close_range", "creat",
    "lseek", "_llseek", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs",
    "fstatfs", "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents",
    "getdents64", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod",
    "fchmodat", "chown", "fchown", "fchownat", "lchown", "truncate", "ftruncate",
    "fallocate", "fadvise64", "fsync", "fdatasync", "sync_file_range", "syncfs", "flock",
    "fcntl", "dup", "dup2", "dup3", "pipe", "pipe2", "getcwd", "chdir", "fchdir",
    "umask", "utime", "utimes", "utimensat", "futimesat", "copy_file_range",
    "sendfile", "splice", "tee", "mknodat", "getxattr", "lgetxattr",
    "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    # memory
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock", "mlock2",
    "munlock", "mincore", "msync", "get_mempolicy", "membarrier",
    # processes, threads, signals
    "clone", "fork", "vfork", "execve", "exit", "exit_group", "wait4",
    "waitid", "kill", "tgkill", "tkill", "getpid", "getppid", "gettid", "getpgid",
    "setpgid", "getpgrp", "getsid", "setsid", "getuid", "geteuid", "getgid", "getegid",
    "getresuid", "getresgid", "getgroups", "capget", "prctl", "arch_prctl",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "futex",
    "futex_waitv", "sched_yield", "sched_getaffinity", "sched_setaffinity",
    "sched_getparam", "sched_getscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "getpriority", "setpriority",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend",
    "sigaltstack", "pause", "alarm", "getitimer", "setitimer", "pidfd_open",
    "pidfd_send_signal", "getrlimit", "setrlimit", "prlimit64", "getrusage", "times",
    "uname", "sysinfo", "getrandom", "restart_syscall",
    # time
    "clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "nanosleep",
    "time", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime",
    # I/O multiplexing and event fds
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    "signalfd", "signalfd4", "inotify_init", "inotify_init1", "inotify_add_watch",
    "inotify_rm_watch",
    # sockets: unix sockets to the host's model proxy and doorbell (``socket`` and
    # ``socketpair`` themselves are in ARGUMENT_FILTERED: AF_UNIX only).
    "connect", "bind", "listen", "accept", "accept4",
    "getsockname", "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown", "setsockopt", "getsockopt",
)

# clone's flags word must have none of these: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
# NEWUSER, NEWPID, NEWNET.
CLONE_NAMESPACE_FLAGS = 0x7E020000


def seccomp_profile(*, gvisor: bool = False,
                    socket_families: frozenset[int] = SOCKET_FAMILIES) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object. ``socket_families``: :data:`SOCKET_FAMILIES`,
    or :data:`LOOPBACK_SOCKET_FAMILIES` for an MCP server with egress.

    Under gVisor, ``clone3`` is left to the Sentry instead of answering ENOSYS here:
    Debian's 2022 runsc applies the profile's default errno (EPERM) where a rule names
    its own, and glibc falls back to ``clone`` only on ENOSYS, so no thread could
    start. The Sentry's own ``clone3`` creates namespaces only inside gVisor's kernel;
    the red-team harness probes it either way."""
    plain = sorted(set(ALLOWED_SYSCALLS) - {"clone"})
    overlap = FORBIDDEN_SYSCALLS.intersection(ALLOWED_SYSCALLS)
    if overlap:  # an edit error in this module; refuse to build a profile from it
        raise AssertionError(f"syscalls both allowed and forbidden: {sorted(overlap)}")
    unfiltered = set(ARGUMENT_FILTERED).intersection(ALLOWED_SYSCALLS)
    if unfiltered:  # the same: these may only be allowed with their argument filter
        raise AssertionError(f"syscalls allowed without their filter: {sorted(unfiltered)}")
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": plain, "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ALLOW"} if gvisor else
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            *_argument_rules(socket_families),
        ],
    }


def argument_filters(socket_families: frozenset[int] = SOCKET_FAMILIES
                     ) -> dict[str, tuple[int, frozenset[int]]]:
    """:data:`ARGUMENT_FILTERED`, with ``socket_families`` for the socket calls."""
    if not socket_families <= LOOPBACK_SOCKET_FAMILIES:
        raise ValueError("socket families beyond unix and loopback IPv4 are never allowed")
    return {**ARGUMENT_FILTERED, "socket": (0, socket_families),
            "socketpair": (0, SOCKET_FAMILIES)}


def _argument_rules(socket_families: frozenset[int]) -> list[dict[str, Any]]:
    """One rule per allowed value: rules for one syscall are alternatives in every
    runtime, while several conditions inside one rule are not read alike by all."""
    return [{"names": [name], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": index, "value": value, "op": "SCMP_CMP_EQ"}]}
            for name, (index, values) in sorted(argument_filters(socket_families).items())
            for value in sorted(values)]
