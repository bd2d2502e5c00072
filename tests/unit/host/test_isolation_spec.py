"""The spec builder emits the hardened spec, and the validator refuses every weaker
variant: one test per rule of invariant 2 in docs/design.md."""

from __future__ import annotations

import copy
import socket
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ironclaw.host.isolation.seccomp import (
    ALLOWED_SYSCALLS,
    ARGUMENT_FILTERED,
    FORBIDDEN_SYSCALLS,
)
from ironclaw.host.isolation.spec import (
    BundleInputs,
    ExtraBind,
    GrantedBind,
    SandboxLimits,
    UserMapping,
    WeakSpec,
    build_spec,
    validate_spec,
)

Spec = dict[str, Any]


@pytest.fixture
def inputs(tmp_path: Path) -> BundleInputs:
    session = tmp_path / "state" / "sessions" / "s1"
    return BundleInputs(
        container_id="ic-s1", rootfs=tmp_path / "image" / "rootfs", args=("/app/agent",),
        inbound_dir=session / "inbound", outbound_dir=session / "outbound",
        key_file=tmp_path / "keys" / "s1" / "session.key",
        config_file=session / "run" / "agent.json", socket_dir=session / "sock",
        workspace=tmp_path / "state" / "workspaces" / "demo", cgroups_path="/ironclaw/ic-s1")


def _mount(spec: Spec, destination: str) -> dict[str, Any]:
    return next(m for m in spec["mounts"] if m["destination"] == destination)


def test_the_built_spec_is_the_hardened_one(inputs: BundleInputs) -> None:
    spec = build_spec(inputs)
    process, linux = spec["process"], spec["linux"]
    assert process["user"] == {"uid": 65532, "gid": 65532}
    assert process["noNewPrivileges"] is True
    assert all(v == [] for v in process["capabilities"].values())
    assert spec["root"]["readonly"] is True
    assert {ns["type"] for ns in linux["namespaces"]} >= {
        "pid", "network", "ipc", "uts", "mount", "user", "cgroup"}
    assert linux["uidMappings"][0]["hostID"] >= 1000
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert linux["resources"]["memory"]["limit"] == SandboxLimits().memory_bytes
    assert linux["resources"]["pids"]["limit"] == SandboxLimits().pids
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert "ro" in _mount(spec, "/queue/inbound")["options"]
    assert "rw" in _mount(spec, "/queue/outbound")["options"]
    assert {"nosuid", "nodev", "noexec"} <= set(_mount(spec, "/workspace")["options"])
    assert "ro" in _mount(spec, "/run/ironclaw/session.key")["options"]
    assert _mount(spec, "/tmp")["type"] == "tmpfs"
    sources = {m["source"] for m in spec["mounts"] if m["type"] == "bind"}
    assert str(inputs.inbound_dir.parents[2]) not in sources  # never the state dir


def test_gvisor_gets_its_own_pids_limit(inputs: BundleInputs) -> None:
    import attrs

    spec = build_spec(attrs.evolve(inputs, gvisor=True))
    assert spec["linux"]["resources"]["pids"]["limit"] == SandboxLimits().gvisor_pids


def test_seccomp_lists_are_disjoint_and_cover_the_named_dangers() -> None:
    assert not FORBIDDEN_SYSCALLS.intersection(ALLOWED_SYSCALLS)
    for name in ("ptrace", "mount", "bpf", "unshare", "setns", "keyctl", "kexec_load",
                 "init_module", "finit_module", "delete_module", "memfd_create",
                 "execveat", "socketcall"):
        assert name in FORBIDDEN_SYSCALLS
    assert not set(ARGUMENT_FILTERED).intersection(ALLOWED_SYSCALLS)


def test_socket_and_ioctl_are_allowed_only_for_the_agents_own_arguments(
        inputs: BundleInputs) -> None:
    syscalls = build_spec(inputs)["linux"]["seccomp"]["syscalls"]
    allowed = {(rule["names"][0], arg["index"], arg["value"]) for rule in syscalls
               if rule.get("args") and rule["names"][0] != "clone" for arg in rule["args"]}
    assert allowed == {
        ("socket", 0, socket.AF_UNIX), ("socketpair", 0, socket.AF_UNIX),
        *(("ioctl", 1, request) for request in (
            termios.FIONBIO, termios.TCGETS, termios.TIOCGWINSZ, termios.FIOCLEX,
            termios.FIONCLEX))}
    assert all(arg["op"] == "SCMP_CMP_EQ" for rule in syscalls if rule["names"][0] != "clone"
               for arg in rule.get("args") or ())


def _net(spec: Spec) -> None:
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"]
                                   if ns["type"] != "network"]


def _host_net(spec: Spec) -> None:
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = "/proc/1/ns/net"


def _user(spec: Spec) -> None:
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"]
                                   if ns["type"] != "user"]
    spec["linux"].pop("uidMappings")


def _host_root(spec: Spec) -> None:
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]


def _writable_root(spec: Spec) -> None:
    spec["root"]["readonly"] = False


def _new_privs(spec: Spec) -> None:
    spec["process"]["noNewPrivileges"] = False


def _caps(spec: Spec) -> None:
    spec["process"]["capabilities"]["bounding"] = ["CAP_SYS_ADMIN"]


def _root_user(spec: Spec) -> None:
    spec["process"]["user"] = {"uid": 0, "gid": 0}


def _no_seccomp(spec: Spec) -> None:
    del spec["linux"]["seccomp"]


def _seccomp_denylist(spec: Spec) -> None:
    spec["linux"]["seccomp"]["defaultAction"] = "SCMP_ACT_ALLOW"


def _seccomp_ptrace(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"][0]["names"].append("ptrace")


def _seccomp_mount(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"].append(
        {"names": ["mount", "unshare", "bpf"], "action": "SCMP_ACT_ALLOW"})


def _clone_unmasked(spec: Spec) -> None:
    for rule in spec["linux"]["seccomp"]["syscalls"]:
        if rule["names"] == ["clone"]:
            rule.pop("args")


def _clone3_allowed(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"].append({"names": ["clone3"],
                                                 "action": "SCMP_ACT_ALLOW"})


def _rules(spec: Spec, name: str) -> list[dict[str, Any]]:
    return [rule for rule in spec["linux"]["seccomp"]["syscalls"] if name in rule["names"]]


def _socket_any_family(spec: Spec) -> None:
    _rules(spec, "socket")[0].pop("args")


def _socket_alg(spec: Spec) -> None:
    _rules(spec, "socket")[0]["args"][0]["value"] = socket.AF_ALG


def _socket_vsock_alongside(spec: Spec) -> None:
    # A second condition on the same argument: runc reads the two as alternatives.
    _rules(spec, "socket")[0]["args"].append(
        {"index": 0, "value": socket.AF_VSOCK, "op": "SCMP_CMP_EQ"})


def _socket_netlink_rule(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"].append(
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": socket.AF_NETLINK, "op": "SCMP_CMP_EQ"}]})


def _socket_families_above(spec: Spec) -> None:
    _rules(spec, "socket")[0]["args"][0]["op"] = "SCMP_CMP_GE"


def _socketpair_any_family(spec: Spec) -> None:
    _rules(spec, "socketpair")[0].pop("args")


def _socket_in_plain_list(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"][0]["names"].append("socket")


def _socket_filters_type_not_family(spec: Spec) -> None:
    _rules(spec, "socket")[0]["args"][0]["index"] = 1


def _ioctl_unfiltered(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"].append({"names": ["ioctl"],
                                                 "action": "SCMP_ACT_ALLOW"})


def _ioctl_tiocsti(spec: Spec) -> None:
    _rules(spec, "ioctl")[0]["args"][0]["value"] = termios.TIOCSTI


def _ioctl_logged(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"].append({"names": ["ioctl"],
                                                 "action": "SCMP_ACT_LOG"})


def _memfd_create(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"][0]["names"].append("memfd_create")


def _execveat(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"].append({"names": ["execveat"],
                                                 "action": "SCMP_ACT_ALLOW"})


def _socketcall(spec: Spec) -> None:
    spec["linux"]["seccomp"]["syscalls"][0]["names"].append("socketcall")


def _no_memory(spec: Spec) -> None:
    del spec["linux"]["resources"]["memory"]


def _more_memory(spec: Spec) -> None:
    spec["linux"]["resources"]["memory"]["limit"] *= 4


def _no_pids(spec: Spec) -> None:
    del spec["linux"]["resources"]["pids"]


def _no_cpu(spec: Spec) -> None:
    del spec["linux"]["resources"]["cpu"]


def _unmasked(spec: Spec) -> None:
    spec["linux"]["maskedPaths"].remove("/proc/kcore")


def _writable_proc_sys(spec: Spec) -> None:
    spec["linux"]["readonlyPaths"].remove("/proc/sys")


def _inbound_rw(spec: Spec) -> None:
    _mount(spec, "/queue/inbound")["options"] = ["rbind", "nosuid", "nodev", "noexec", "rw"]


def _key_rw(spec: Spec) -> None:
    _mount(spec, "/run/ironclaw/session.key")["options"][-1] = "rw"


def _workspace_exec(spec: Spec) -> None:
    _mount(spec, "/workspace")["options"].remove("noexec")


def _outbound_suid(spec: Spec) -> None:
    _mount(spec, "/queue/outbound")["options"].remove("nosuid")


def _state_dir(spec: Spec) -> None:
    spec["mounts"].append({"destination": "/state", "type": "bind", "source": "/var/lib",
                           "options": ["rbind", "nosuid", "nodev", "noexec", "ro"]})


def _host_usr(spec: Spec) -> None:
    spec["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr",
                           "options": ["rbind", "nosuid", "nodev", "ro"]})


def _other_session(spec: Spec) -> None:
    mount = _mount(spec, "/queue/inbound")
    mount["source"] = mount["source"].replace("/s1/", "/s2/")


def _tmp_exec(spec: Spec) -> None:
    _mount(spec, "/tmp")["options"].remove("noexec")


def _tmp_unbounded(spec: Spec) -> None:
    _mount(spec, "/tmp")["options"] = ["nosuid", "nodev", "noexec", "mode=1777"]


def _sys_rw(spec: Spec) -> None:
    _mount(spec, "/sys")["options"].remove("ro")


def _hook(spec: Spec) -> None:
    spec["hooks"] = {"prestart": [{"path": "/bin/sh"}]}


def _device(spec: Spec) -> None:
    spec["linux"]["devices"] = [{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232}]


def _missing_bind(spec: Spec) -> None:
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/queue/outbound"]


def _no_cgroup(spec: Spec) -> None:
    spec["linux"]["cgroupsPath"] = ""


WEAKENINGS: dict[str, tuple[Callable[[Spec], None], str]] = {
    "host network (no netns)": (_net, "network namespace"),
    "host network (joined)": (_host_net, "must be new"),
    "no user namespace": (_user, "user namespace"),
    "maps to host root": (_host_root, "host root"),
    "writable rootfs": (_writable_root, "read-only"),
    "new privileges": (_new_privs, "no_new_privs"),
    "a capability": (_caps, "capability"),
    "runs as root": (_root_user, "uid and gid"),
    "no seccomp": (_no_seccomp, "seccomp profile is required"),
    "seccomp denylist": (_seccomp_denylist, "deny by default"),
    "seccomp allows ptrace": (_seccomp_ptrace, "ptrace"),
    "seccomp allows mount": (_seccomp_mount, "mount"),
    "clone with namespace flags": (_clone_unmasked, "clone with namespace flags"),
    "clone3 outside gVisor": (_clone3_allowed, "clone3"),
    "socket for any family": (_socket_any_family, "socket with argument 0"),
    "socket for AF_ALG": (_socket_alg, "socket with argument 0"),
    "socket for AF_VSOCK beside AF_UNIX": (_socket_vsock_alongside,
                                           "socket with argument 0"),
    "socket for AF_NETLINK by its own rule": (_socket_netlink_rule,
                                              "socket with argument 0"),
    "socket for families from AF_UNIX up": (_socket_families_above,
                                           "socket with argument 0"),
    "socketpair for any family": (_socketpair_any_family, "socketpair with argument 0"),
    "socket in the plain allowlist": (_socket_in_plain_list, "socket with argument 0"),
    "socket filtered on its type": (_socket_filters_type_not_family,
                                    "socket with argument 0"),
    "ioctl unfiltered": (_ioctl_unfiltered, "ioctl with argument 1"),
    "ioctl TIOCSTI": (_ioctl_tiocsti, "ioctl with argument 1"),
    "ioctl logged, not filtered": (_ioctl_logged, "ioctl with argument 1"),
    "memfd_create allowed": (_memfd_create, "memfd_create"),
    "execveat allowed": (_execveat, "execveat"),
    "socketcall allowed": (_socketcall, "socketcall"),
    "no memory limit": (_no_memory, "memory limit"),
    "memory above the limit": (_more_memory, "memory limit"),
    "no pids limit": (_no_pids, "pids limit"),
    "no cpu limit": (_no_cpu, "cpu quota"),
    "kcore unmasked": (_unmasked, "/proc/kcore"),
    "/proc/sys writable": (_writable_proc_sys, "/proc/sys"),
    "inbound writable": (_inbound_rw, "/queue/inbound must be read-only"),
    "key file writable": (_key_rw, "session.key must be read-only"),
    "workspace executable": (_workspace_exec, "noexec"),
    "outbound setuid": (_outbound_suid, "nosuid"),
    "state dir bound": (_state_dir, "/state is not one of"),
    "host /usr bound": (_host_usr, "/usr is not one of"),
    "another session's queue": (_other_session, "must bind"),
    "/tmp executable": (_tmp_exec, "/tmp must be"),
    "/tmp unbounded": (_tmp_unbounded, "size limit"),
    "/sys writable": (_sys_rw, "/sys must be read-only"),
    "an OCI hook": (_hook, "hooks"),
    "a device node": (_device, "device"),
    "outbound bind missing": (_missing_bind, "missing"),
    "no cgroup": (_no_cgroup, "cgroup"),
}


def _refused_once_weakened(inputs: BundleInputs, weaken: Callable[[Spec], None],
                           expected: str) -> None:
    spec = copy.deepcopy(build_spec(inputs))
    validate_spec(spec, inputs)  # the control: the unweakened spec passes
    weaken(spec)
    with pytest.raises(WeakSpec) as caught:
        validate_spec(spec, inputs)
    assert any(expected in problem for problem in caught.value.problems), caught.value


@pytest.mark.parametrize("name", sorted(WEAKENINGS))
def test_every_weakened_variant_is_refused(inputs: BundleInputs, name: str) -> None:
    _refused_once_weakened(inputs, *WEAKENINGS[name])


def test_the_harness_toolkit_bind_is_accepted_only_when_declared(
        inputs: BundleInputs, tmp_path: Path) -> None:
    import attrs

    toolkit = ExtraBind(tmp_path / "toolkit", Path("/opt/redteam"))
    with_toolkit = attrs.evolve(inputs, extra_binds=(toolkit,))
    spec = build_spec(with_toolkit)
    assert "ro" in _mount(spec, "/opt/redteam")["options"]
    with pytest.raises(WeakSpec, match="/opt/redteam is not one of"):
        validate_spec(spec, inputs)


def test_limits_and_mapping_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        SandboxLimits(memory_bytes=1024)
    with pytest.raises(ValueError):
        SandboxLimits(pids=0)
    with pytest.raises(ValueError):
        UserMapping(host_base=0)
    assert UserMapping(host_base=300_000).agent_host_uid == 365_532


def test_the_sandbox_doc_counts_the_weakened_variants() -> None:
    import re

    doc = (Path(__file__).parents[3] / "docs" / "sandbox.md").read_text()
    counted = re.search(r"\((\d+) in\s+`WEAKENINGS`\)", doc)
    assert counted is not None and int(counted.group(1)) == len(WEAKENINGS)
    granted = re.search(r"\((\d+) in\s+`GRANTED_WEAKENINGS`", doc)
    assert granted is not None and int(granted.group(1)) == len(GRANTED_WEAKENINGS)


# Granted host mounts (the ``mounts`` change kind): the validator accepts exactly the
# granted binds, as granted.
@pytest.fixture
def granted(inputs: BundleInputs, tmp_path: Path) -> BundleInputs:
    import attrs

    stages = tmp_path / "state" / "runtime" / "mounts" / "ic-s1"
    return attrs.evolve(inputs, granted=(
        GrantedBind(stages / "data", "/mnt/data", writable=False),
        GrantedBind(stages / "scratch", "/mnt/scratch", writable=True)))


def _granted_extra(spec: Spec) -> None:
    spec["mounts"].append({"destination": "/mnt/other", "type": "bind",
                           "source": "/srv/other",
                           "options": ["rbind", "nosuid", "nodev", "noexec", "ro"]})


def _granted_rw(spec: Spec) -> None:
    _mount(spec, "/mnt/data")["options"][-1] = "rw"


def _granted_ro_then_rw(spec: Spec) -> None:
    _mount(spec, "/mnt/data")["options"].append("rw")


def _granted_suid(spec: Spec) -> None:
    _mount(spec, "/mnt/data")["options"].remove("nosuid")


def _granted_dev(spec: Spec) -> None:
    _mount(spec, "/mnt/scratch")["options"].remove("nodev")


def _granted_exec(spec: Spec) -> None:
    _mount(spec, "/mnt/scratch")["options"].remove("noexec")


def _granted_over_etc(spec: Spec) -> None:
    _mount(spec, "/mnt/data")["destination"] = "/etc"


def _granted_over_workspace(spec: Spec) -> None:
    _mount(spec, "/mnt/scratch")["destination"] = "/workspace"


def _granted_unstaged(spec: Spec) -> None:
    # The operator's path itself, which a symlink could redirect after the check.
    _mount(spec, "/mnt/data")["source"] = "/srv/data"


def _granted_missing(spec: Spec) -> None:
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/mnt/data"]


def _granted_base_exec(spec: Spec) -> None:
    _mount(spec, "/mnt")["options"].remove("noexec")


def _granted_base_rw(spec: Spec) -> None:
    _mount(spec, "/mnt")["options"][-1] = "rw"


def _granted_base_elsewhere(spec: Spec) -> None:
    _mount(spec, "/mnt")["source"] = "/srv"


def _granted_other_stage(spec: Spec) -> None:
    mount = _mount(spec, "/mnt/data")
    mount["source"] = mount["source"].replace("/ic-s1/", "/ic-s2/")


GRANTED_WEAKENINGS: dict[str, tuple[Callable[[Spec], None], str]] = {
    "a mount nobody granted": (_granted_extra, "/mnt/other is not one of"),
    "rw where ro was granted": (_granted_rw, "/mnt/data must be read-only"),
    "ro undone by a later rw": (_granted_ro_then_rw, "/mnt/data must be read-only"),
    "granted mount setuid": (_granted_suid, "/mnt/data needs nosuid"),
    "granted mount with devices": (_granted_dev, "/mnt/scratch needs nodev"),
    "writable granted mount executable": (_granted_exec, "/mnt/scratch needs noexec"),
    "granted mount over /etc": (_granted_over_etc, "/etc is not one of"),
    "granted mount over the workspace": (_granted_over_workspace, "mounted twice"),
    "the operator's path, not the stage": (_granted_unstaged, "/mnt/data must bind"),
    "granted mount missing": (_granted_missing, "/mnt/data is missing"),
    "/mnt executable": (_granted_base_exec, "/mnt needs noexec"),
    "/mnt writable": (_granted_base_rw, "/mnt must be read-only"),
    "/mnt from elsewhere": (_granted_base_elsewhere, "/mnt must bind"),
    "another sandbox's stage": (_granted_other_stage, "/mnt/data must bind"),
}


@pytest.mark.parametrize("name", sorted(GRANTED_WEAKENINGS))
def test_every_weakened_granted_mount_is_refused(granted: BundleInputs, name: str) -> None:
    _refused_once_weakened(granted, *GRANTED_WEAKENINGS[name])


def test_granted_mounts_are_bound_as_granted(granted: BundleInputs,
                                             inputs: BundleInputs) -> None:
    spec = build_spec(granted)
    destinations = [m["destination"] for m in spec["mounts"]]
    # The stage directory first: every mount point exists before the runtime looks.
    assert destinations.index("/mnt") < destinations.index("/mnt/data")
    assert _mount(spec, "/mnt")["source"].endswith("/runtime/mounts/ic-s1")
    assert _mount(spec, "/mnt")["options"][-1] == "ro"
    assert _mount(spec, "/mnt/data")["options"] == ["rbind", "nosuid", "nodev", "noexec",
                                                    "ro"]
    assert _mount(spec, "/mnt/scratch")["options"][-1] == "rw"
    assert _mount(spec, "/mnt/data")["source"].endswith("/runtime/mounts/ic-s1/data")
    # Revoked (a launch without the grant): the same spec is refused.
    with pytest.raises(WeakSpec, match="/mnt/data is not one of"):
        validate_spec(spec, inputs)
    assert "/mnt" not in [m["destination"] for m in build_spec(inputs)["mounts"]]


@pytest.mark.parametrize("target", ["/etc", "/mnt", "/mnt/", "/mnt/../etc", "/mnt/a/../b",
                                    "/mnt//a", "mnt/a", "/workspace/x", "/mnt/a/b",
                                    "/mnt/.."])
def test_a_granted_target_lies_below_mnt(target: str) -> None:
    with pytest.raises(ValueError):
        GrantedBind(Path("/stage/0"), target)


def test_a_granted_bind_comes_from_its_own_stage_point(granted: BundleInputs,
                                                      tmp_path: Path) -> None:
    import attrs

    stages = granted.granted[0].source.parent
    for odd in (GrantedBind(tmp_path / "elsewhere" / "x", "/mnt/x"),  # another directory
                GrantedBind(stages / "y", "/mnt/x"),  # another name
                GrantedBind(stages / "data", "/mnt/data")):  # a second /mnt/data
        with pytest.raises(WeakSpec):
            build_spec(attrs.evolve(granted, granted=(*granted.granted, odd)))
