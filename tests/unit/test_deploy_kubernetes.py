"""deploy/kubernetes: every object is a valid Kubernetes object (the official client's
API models, offline: no cluster, no kubectl), nothing in it is a field the API would
drop, and it keeps the promises docs/deploy.md makes: a private Service, gVisor nodes,
a persistent volume, a NetworkPolicy over the control plane, secrets from a Secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes = pytest.importorskip("kubernetes", reason="the kubernetes client (dev extra)")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"


def _model_name(obj: dict[str, Any]) -> str:
    group_version = obj["apiVersion"]
    version = group_version.split("/")[-1]
    return "V1" + obj["kind"] if version == "v1" else version.capitalize() + obj["kind"]


def _objects() -> list[tuple[str, dict[str, Any]]]:
    resources = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    found = []
    for name in resources:
        for obj in yaml.safe_load_all((DEPLOY / name).read_text()):
            found.append((name, obj))
    return found


def _strip_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_empty(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_empty(v) for v in value]
    return value


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load(KUSTOMIZATION.read_text())["resources"])
    present = {p.name for p in DEPLOY.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert listed == present


@pytest.mark.parametrize(("name", "obj"), _objects(), ids=lambda v: v if isinstance(
    v, str) else "")
def test_each_object_is_a_valid_api_object(name: str, obj: dict[str, Any]) -> None:
    client = kubernetes.client.ApiClient()
    model = client._ApiClient__deserialize(obj, _model_name(obj))  # the client's own path
    # A field the model does not know (a typo, a wrong level) would vanish here.
    assert _strip_empty(client.sanitize_for_serialization(model)) == obj
    if obj["kind"] != "Namespace":
        assert obj["metadata"]["namespace"] == "ironclaw"


def _by_kind() -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for _name, obj in _objects()}


def test_the_promises_hold() -> None:
    objs = _by_kind()
    service = objs["Service"]["spec"]
    assert service["type"] == "ClusterIP" and "externalIPs" not in service
    pod = objs["StatefulSet"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert pod["spec"]["nodeSelector"] == {"ironclaw.dev/gvisor": "true"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert service["selector"] == labels
    claims = objs["StatefulSet"]["spec"]["volumeClaimTemplates"]
    (plane,) = pod["spec"]["containers"]
    assert {m["name"]: m["mountPath"] for m in plane["volumeMounts"]}[
        claims[0]["metadata"]["name"]] == "/var/lib/ironclaw"
    secret = objs["Secret"]["metadata"]["name"]
    assert plane["envFrom"] == [{"secretRef": {"name": secret}}]
    assert not any("value" in env for env in plane.get("env", []))
    policy = objs["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == labels
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert all("from" in rule for rule in policy["ingress"])  # never open to all


def test_the_placeholder_token_is_one_the_daemon_refuses() -> None:
    from ironclaw.host.api.principals import PrincipalError, check_token_shape

    token = _by_kind()["Secret"]["stringData"]["IRONCLAW_API_TOKEN"]
    with pytest.raises(PrincipalError):
        check_token_shape(token)


def test_the_configmap_holds_a_config_the_daemon_loads(tmp_path: Path) -> None:
    from ironclaw.host.config.file import load_config_file

    config = tmp_path / "config.toml"
    config.write_text(_by_kind()["ConfigMap"]["data"]["config.toml"])
    loaded = load_config_file(config)
    assert loaded["runtime"] == "runsc" and loaded["state_dir"] == Path("/var/lib/ironclaw")
