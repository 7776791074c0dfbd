#!/usr/bin/python3
# OCI runtime wrapper for Docker on hosts whose capability bounding set is smaller than the full
# capability list (seen: CAP_SYS_RESOURCE missing). Docker asks for every known capability for
# --privileged containers, and runc then fails with "unable to apply caps: operation not permitted".
# This wrapper drops every capability the host cannot grant from the container spec
# (create/run: <bundle>/config.json) and from exec process specs (exec --process FILE), then
# execs the real runc with the original arguments. Installed by cluster/docker-up.sh only when needed.
import json
import os
import sys

REAL_RUNC = os.environ.get("MODELDEPLOY_REAL_RUNC", "@REAL_RUNC@")

CAP_NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

# runc global options that take a value (everything before the subcommand).
VALUE_OPTS = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def missing_caps():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bnd = int(line.split()[1], 16)
                break
        else:
            return set()
    return {name for i, name in enumerate(CAP_NAMES) if not bnd & (1 << i)}


def filter_process(proc, drop):
    caps = proc.get("capabilities") or {}
    changed = False
    for key, values in caps.items():
        if isinstance(values, list):
            kept = [c for c in values if c not in drop]
            if len(kept) != len(values):
                caps[key] = kept
                changed = True
    return changed


def rewrite(path, drop, whole_spec):
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return
    proc = spec.get("process") if whole_spec else spec
    if isinstance(proc, dict) and filter_process(proc, drop):
        with open(path, "w") as f:
            json.dump(spec, f)


def option_value(args, names):
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def main():
    args = sys.argv[1:]
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in VALUE_OPTS else 1
    cmd = args[i] if i < len(args) else ""
    rest = args[i + 1:]
    drop = missing_caps()
    if drop:
        if cmd in ("create", "run"):
            bundle = option_value(rest, ("--bundle", "-b")) or os.getcwd()
            rewrite(os.path.join(bundle, "config.json"), drop, True)
        elif cmd == "exec":
            proc = option_value(rest, ("--process", "-p"))
            if proc:
                rewrite(proc, drop, False)
    os.execv(REAL_RUNC, [REAL_RUNC] + args)


if __name__ == "__main__":
    main()
