"""seccomp-bpf: the system calls an isolate may make, as a hand-written classic BPF program.

Written out here rather than taken from a library (libseccomp via `pyseccomp`): the filter
is ~90 instructions, a dependency would need the C library on every PoP, and the program
below is short enough to audit in one sitting.

Policy: allow by default; refuse the calls that reach outside the sandbox (namespaces,
mounts, tracing, kernel modules, keyrings, BPF, exec, ...) with EPERM, and io_uring and
clone3 with ENOSYS, which libraries read as "not supported here" and fall back from (glibc
retries clone3 as clone; libuv uses epoll). A foreign architecture or the x32 ABI is killed.
"""

from __future__ import annotations

import ctypes
import errno

from ._sys import MACHINE, prctl

PR_SET_SECCOMP = 22
PR_GET_SECCOMP = 21
SECCOMP_MODE_FILTER = 2
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

# Every CLONE_NEW* flag clone() accepts (CLONE_NEWTIME shares its bit with CSIGNAL there).
CLONE_NEW_MASK = 0x7E020000
AF_UNIX = 1
SOCK_TYPE_MASK = 0xF
SOCK_STREAM, SOCK_SEQPACKET = 1, 5
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

# name: (x86_64, aarch64); None where the architecture has no such call.
SYSCALLS: dict[str, tuple[int | None, int | None]] = {
    "ptrace": (101, 117), "mount": (165, 40), "umount2": (166, 39), "unshare": (272, 97),
    "setns": (308, 268), "bpf": (321, 280), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "keyctl": (250, 219), "add_key": (248, 217),
    "request_key": (249, 218), "perf_event_open": (298, 241),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "execve": (59, 221),
    "execveat": (322, 281), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224),
    "swapoff": (168, 225), "pivot_root": (155, 41), "chroot": (161, 51), "acct": (163, 89),
    "userfaultfd": (323, 282), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
    # Beyond the minimum: the new mount API, fd theft, and host-wide knobs.
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442), "open_tree_attr": (467, 467), "pidfd_getfd": (438, 438),
    "kcmp": (312, 272), "syslog": (103, 116), "iopl": (172, None), "ioperm": (173, None),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "adjtimex": (159, 171),
    "clock_adjtime": (305, 266), "lookup_dcookie": (212, 18), "quotactl": (179, 60),
    "vhangup": (153, 58), "fanotify_init": (300, 262), "sethostname": (170, 161),
    "setdomainname": (171, 162), "uselib": (134, None),
    # Unconditionally: an isolate's sockets come ready-made (inherited, socketpair), and a
    # connect() is the one way to a host's named Unix sockets (D-Bus, journald, ...).
    "connect": (42, 203),
}
# Only when the isolate shares a uid with its own files' owner or with root: Landlock does
# not mediate mode or owner changes.
METADATA = {"chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53),
            "fchmodat2": (452, 452), "chown": (92, None), "fchown": (93, 55),
            "lchown": (94, None), "fchownat": (260, 54)}
ENOSYS_CALLS = {"clone3": (435, 435), "io_uring_setup": (425, 425),
                "io_uring_enter": (426, 426), "io_uring_register": (427, 427)}
SPECIAL = {"clone": (56, 220), "socket": (41, 198), "socketpair": (53, 199),
           "ioctl": (16, 29)}

DENIED = sorted(SYSCALLS)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


LD_W_ABS = 0x20
JEQ, JGE, JSET = 0x15, 0x35, 0x45
ALU_AND = 0x54
RET = 0x06
OFF_NR, OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:
    # args[i] are 64-bit; both supported architectures are little-endian, so the low
    # half (all an int argument is made of) comes first.
    return 16 + 8 * i


def arch() -> tuple[int, int] | None:
    """(AUDIT_ARCH value, column in the tables) for this machine, or None."""
    if MACHINE == "x86_64":
        return AUDIT_ARCH_X86_64, 0
    if MACHINE in ("aarch64", "arm64"):
        return AUDIT_ARCH_AARCH64, 1
    return None


def unavailable_reason() -> str | None:
    if arch() is None:
        return f"no syscall table for {MACHINE} (x86_64 and aarch64 only)"
    try:
        prctl(PR_GET_SECCOMP)
    except OSError as e:
        return f"the kernel has no seccomp ({e.strerror})"
    return None


def build(guard_metadata: bool) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions."""
    a = arch()
    assert a is not None
    audit_arch, col = a

    prog: list[tuple[int, str | int, str | int, int]] = []
    labels: dict[str, int] = {}

    def op(code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        prog.append((code, jt, jf, k))

    def label(name: str) -> None:
        labels[name] = len(prog)

    def nr(table: dict[str, tuple[int | None, int | None]]) -> list[int]:
        return sorted({n for pair in table.values() if (n := pair[col]) is not None})

    op(LD_W_ABS, OFF_ARCH)
    op(JEQ, audit_arch, 0, "kill")
    op(LD_W_ABS, OFF_NR)
    if col == 0:
        op(JGE, X32_SYSCALL_BIT, "kill", 0)
    eperm = dict(SYSCALLS)
    if guard_metadata:
        eperm.update(METADATA)
    for n in nr(eperm):
        op(JEQ, n, "eperm", 0)
    for n in nr(ENOSYS_CALLS):
        op(JEQ, n, "enosys", 0)
    clone, sock, pair, ioctl = (SPECIAL[k][col] for k in ("clone", "socket", "socketpair",
                                                             "ioctl"))
    assert clone is not None and sock is not None and pair is not None and ioctl is not None
    op(JEQ, clone, "clone", 0)
    op(JEQ, sock, "socket", 0)
    op(JEQ, pair, "socket", 0)
    op(JEQ, ioctl, "ioctl", 0)
    op(RET, RET_ALLOW)

    label("clone")  # no new namespaces from clone() flags
    op(LD_W_ABS, _arg_lo(0))
    op(JSET, CLONE_NEW_MASK, "eperm", "allow")

    label("socket")  # Unix stream/seqpacket only: a datagram can be sent to any path
    op(LD_W_ABS, _arg_lo(0))
    op(JEQ, AF_UNIX, 0, "eperm")
    op(LD_W_ABS, _arg_lo(1))
    op(ALU_AND, SOCK_TYPE_MASK)
    op(JEQ, SOCK_STREAM, "allow", 0)
    op(JEQ, SOCK_SEQPACKET, "allow", "eperm")

    label("ioctl")  # pushing input into an inherited terminal (the operator's shell)
    op(LD_W_ABS, _arg_lo(1))
    op(JEQ, TIOCSTI, "eperm", 0)
    op(JEQ, TIOCLINUX, "eperm", "allow")

    label("allow")
    op(RET, RET_ALLOW)
    label("eperm")
    op(RET, RET_ERRNO | errno.EPERM)
    label("enosys")
    op(RET, RET_ERRNO | errno.ENOSYS)
    label("kill")
    op(RET, RET_KILL_PROCESS)

    out: list[tuple[int, int, int, int]] = []
    for i, (code, jt, jf, k) in enumerate(prog):
        def rel(j: str | int, i: int = i) -> int:
            if isinstance(j, int):
                return j
            d = labels[j] - i - 1
            assert 0 <= d <= 255, "BPF jump out of range"
            return d
        out.append((code, rel(jt), rel(jf), k))
    return out


def _program(guard_metadata: bool) -> ctypes.Array[_SockFilter]:
    insns = build(guard_metadata)
    return (_SockFilter * len(insns))(*(_SockFilter(*t) for t in insns))


# Built once at import, in the zygote, so a template only has to load it.
_PROGRAMS = {g: _program(g) for g in (False, True)} if arch() is not None else {}


def install(guard_metadata: bool) -> int:
    """Load the filter into this thread (children inherit it); returns its length."""
    arr = _PROGRAMS[guard_metadata]
    fprog = _SockFprog(len(arr), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    return len(arr)


# --- the isolate's own filter ------------------------------------------------------------
# Templates must fork; isolates never need to. A second filter, stacked on the template's
# after the fork, refuses new processes (fork, vfork, clone without CLONE_THREAD) while
# still allowing threads, so a fork bomb stops at its first fork with PermissionError.
CLONE_THREAD = 0x00010000
NO_FORK = {"fork": (57, None), "vfork": (58, None)}


def _isolate_program() -> ctypes.Array[_SockFilter]:
    a = arch()
    assert a is not None
    audit_arch, col = a
    clone = SPECIAL["clone"][col]
    forks = sorted(n for pair in NO_FORK.values() if (n := pair[col]) is not None)
    # Offsets are written out: the program is short and fixed.
    insns = [(LD_W_ABS, 0, 0, OFF_ARCH), (JEQ, 1, 0, audit_arch), (RET, 0, 0, RET_KILL_PROCESS),
             (LD_W_ABS, 0, 0, OFF_NR)]
    tail = len(forks)
    for i, n in enumerate(forks):
        # jump to "eperm" (the last instruction) on a match
        insns.append((JEQ, (tail - i - 1) + 4, 0, n))
    insns += [(JEQ, 0, 2, clone or 0xFFFFFFFF),            # clone? check its flags
              (LD_W_ABS, 0, 0, _arg_lo(0)),
              (JSET, 0, 1, CLONE_THREAD),                   # a thread: allow; else eperm
              (RET, 0, 0, RET_ALLOW),
              (RET, 0, 0, RET_ERRNO | errno.EPERM)]
    return (_SockFilter * len(insns))(*(_SockFilter(*t) for t in insns))


_ISOLATE_PROGRAM = _isolate_program() if arch() is not None else None


def install_isolate_filter() -> bool:
    """In an isolate, after the fork: no more processes. False where seccomp is absent."""
    if _ISOLATE_PROGRAM is None or unavailable_reason() is not None:
        return False
    arr = _ISOLATE_PROGRAM
    fprog = _SockFprog(len(arr), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    return True
