"""`llama-bake kube`: the manifests validate offline against the official Kubernetes OpenAPI schemas (as PyPI's
kubernetes-validate ships them) for every supported version, every pod spec passes the `restricted` Pod Security
Standard, and the directory is regenerated and drift-checked like the other generated files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import kubernetes_validate.utils  # type: ignore[import-untyped]
import pytest
import yaml
from click.testing import CliRunner
from packaging.version import Version

from llama_bake.cli import main
from llama_bake.plan.ir import SERVER_UID
from llama_bake.project import Paths, plan_catalog
from llama_bake.render.kube import FETCH_BYTES_PER_SECOND, LOAD_BYTES_PER_SECOND, startup_seconds
from tests.conftest import MODEL, WriteCatalog

GOLDEN = Path(__file__).parent / "golden"
OLDEST = Version("1.29.0")  # the oldest Kubernetes llama-bake writes for
VERSIONS = sorted({v for v in kubernetes_validate.utils.all_versions() if Version(v) >= OLDEST}, key=Version)


def documents(directory: Path) -> list[dict[str, Any]]:
    """Every Kubernetes object in the directory's files (the kustomization is kustomize's, not the API's)."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            found += [d for d in yaml.safe_load_all(handle) if d["kind"] != "Kustomization"]
    return found


def write_kube(catalog: Path, *args: str) -> Path:
    result = CliRunner().invoke(main, ["kube", "-c", str(catalog), *args])
    assert result.exit_code == 0, result.output
    return catalog.parent / "kube"


def test_the_supported_versions_reach_the_newest_schemas_the_package_ships() -> None:
    assert VERSIONS[0] == "1.29.0"
    assert Version(VERSIONS[-1]) >= Version("1.34.0")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_openapi_schema(version: str) -> None:
    """Strict: an unknown field is an error too (the schemas with additionalProperties false)."""
    found = documents(GOLDEN / "multi" / "kube") + documents(GOLDEN / "vulkan" / "kube")
    assert {d["kind"] for d in found} == {"Deployment", "Service", "PersistentVolumeClaim"}
    for document in found:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_check_is_not_vacuous() -> None:
    deployment = next(d for d in documents(GOLDEN / "multi" / "kube") if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["failureTreshold"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected"}
ALLOWED_VOLUMES |= {"secret"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The `restricted` Pod Security Standard's checks (with the `baseline` ones it includes) on a pod spec, as the
    Kubernetes documentation lists them."""
    found = [f"{key} is set" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']} is {kinds}")
    for container in pod["containers"] + pod.get("initContainers", []):
        found += [f"{container['name']}: {v}" for v in _container_violations(container, pod.get("securityContext", {}))]
    return found


def _container_violations(container: dict[str, Any], pod_context: dict[str, Any]) -> list[str]:
    context = container.get("securityContext", {})
    found = []
    if context.get("privileged"):
        found.append("privileged")
    if any(port.get("hostPort") for port in container.get("ports", [])):
        found.append("hostPort")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
        found.append("runAsNonRoot is not true")
    if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
        found.append("runAsUser is 0")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        found.append(f"seccompProfile is {seccomp}")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        found.append("capabilities do not drop ALL")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        found.append(f"capabilities add {capabilities['add']}")
    return found


def test_every_pod_spec_passes_the_restricted_pod_security_standard() -> None:
    deployments = [d for d in documents(GOLDEN / "multi" / "kube") if d["kind"] == "Deployment"]
    assert len(deployments) == 4
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], deployment["metadata"]["name"]
        assert pod["securityContext"]["runAsUser"] == SERVER_UID
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert restricted_violations({"containers": [{"name": "c"}]}), "the checks find a pod that fails them"


def by_kind(directory: Path, name: str) -> dict[str, dict[str, Any]]:
    with (directory / f"{name}.yaml").open(encoding="utf-8") as handle:
        return {d["kind"]: d for d in yaml.safe_load_all(handle)}


def test_gpu_request_node_selection_key_secret_and_fetch_cache() -> None:
    kube = GOLDEN / "multi" / "kube"
    vision = by_kind(kube, "vision")["Deployment"]["spec"]["template"]["spec"]
    (container,) = vision["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 2}  # compose.gpus: two device ids
    terms = vision["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    capabilities = {(t["matchExpressions"][0]["values"][0], t["matchExpressions"][1]["values"][0]) for t in terms}
    assert capabilities == {("9", "0"), ("10", "0"), ("12", "1")}  # hopper, blackwell-datacenter, gb10
    assert {e["key"] for t in terms for e in t["matchExpressions"]} == {
        "nvidia.com/gpu.compute.major",
        "nvidia.com/gpu.compute.minor",
    }
    assert vision["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert container["args"] == ["--api-key-file", "/run/secrets/llama-bake/api-key"]
    secret = next(v for v in vision["volumes"] if v["name"] == "api-key")["secret"]
    assert secret["secretName"] == "vision-api-key"
    tiny = by_kind(kube, "tiny-cpu")
    assert tiny["PersistentVolumeClaim"]["metadata"]["name"] == "tiny-cpu-cache"
    pod = tiny["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "tiny-cpu-cache"}} in pod["volumes"]
    assert "limits" not in pod["containers"][0]["resources"]  # a cpu base asks for no GPU
    assert "args" not in pod["containers"][0]  # no key source: no key
    assert "affinity" not in pod


def test_the_kustomization_pins_the_digests_of_the_last_build() -> None:
    with (GOLDEN / "multi" / "kube" / "kustomization.yaml").open(encoding="utf-8") as handle:
        kustomization = yaml.safe_load(handle)
    assert kustomization["resources"] == ["gated.yaml", "local.yaml", "tiny-cpu.yaml", "vision.yaml"]
    pinned = {i["name"]: i for i in kustomization["images"]}
    # `local`'s digest is an engine's image ID and `gated` failed: neither is a registry digest.
    assert set(pinned) == {"registry.example.com/team/tiny-cpu", "registry.example.com/team/vision"}
    assert pinned["registry.example.com/team/vision"]["newName"] == "mirror.example.com/team/vision"


def test_the_startup_probe_is_sized_for_loading_the_weights(write_catalog: WriteCatalog) -> None:
    big = 40 * LOAD_BYTES_PER_SECOND * 60  # 40 minutes at the load rate
    weights = {**MODEL["weights"], "size": big}
    catalog = write_catalog(
        models={
            "small": MODEL,
            "big": {**MODEL, "weights": weights},
            "fetched": {**MODEL, "weights": weights, "delivery": "fetch"},
        }
    )
    paths = Paths.from_options(catalog, None)
    cat, plan = plan_catalog(paths)
    models = {m.name: m for m in cat.models}
    assert startup_seconds(plan.target("small"), models["small"]) == 600  # the catalog's start period, 10m
    assert startup_seconds(plan.target("big"), models["big"]) == 2400
    assert startup_seconds(plan.target("fetched"), models["fetched"]) == 2400 + big // FETCH_BYTES_PER_SECOND
    kube = write_kube(catalog)
    probe = by_kind(kube, "big")["Deployment"]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 2400


def test_generate_checks_and_refreshes_the_manifests_and_removes_a_gone_models_file(
    write_catalog: WriteCatalog,
) -> None:
    catalog = write_catalog(models={"a": MODEL, "b": MODEL}, project={"api_key": {"env": "TEAM_KEY"}})
    kube = write_kube(catalog)
    assert sorted(p.name for p in kube.iterdir()) == ["a.yaml", "b.yaml", "kustomization.yaml"]
    secret = by_kind(kube, "a")["Deployment"]["spec"]["template"]["spec"]["volumes"][-1]["secret"]
    assert secret["secretName"] == "llama-api-key"  # the project's key: one Secret for every model
    runner = CliRunner()
    assert runner.invoke(main, ["generate", "-c", str(catalog)]).exit_code == 0
    assert runner.invoke(main, ["generate", "--check", "-c", str(catalog)]).exit_code == 0
    (catalog / "models" / "b.yaml").unlink()
    (catalog / "models" / "a.yaml").write_text(yaml.safe_dump({**MODEL, "server": {"port": 9090}}))
    stale = runner.invoke(main, ["generate", "--check", "-c", str(catalog)])
    assert stale.exit_code == 4
    assert "b.yaml: no model uses it any more" in stale.output
    assert "containerPort: 9090" in stale.output
    assert runner.invoke(main, ["generate", "-c", str(catalog)]).exit_code == 0
    assert sorted(p.name for p in kube.iterdir()) == ["a.yaml", "kustomization.yaml"]
    assert runner.invoke(main, ["generate", "--check", "-c", str(catalog)]).exit_code == 0


def test_a_file_the_team_added_to_the_directory_is_never_touched(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog()
    kube = write_kube(catalog)
    own = kube / "networkpolicy.yaml"
    own.write_text("kind: NetworkPolicy\n")
    assert CliRunner().invoke(main, ["generate", "-c", str(catalog)]).exit_code == 0
    assert CliRunner().invoke(main, ["generate", "--check", "-c", str(catalog)]).exit_code == 0
    write_kube(catalog)
    assert own.read_text() == "kind: NetworkPolicy\n"


def test_a_summary_that_is_not_one_is_refused(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    (tmp_path / "nope.json").write_text("{}")
    result = CliRunner().invoke(main, ["kube", "-c", str(write_catalog()), "--summary", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "not a build summary" in result.output


def test_the_out_directory_is_repeated_in_the_header(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog()
    out = catalog.parent / "deploy" / "base"
    CliRunner().invoke(main, ["kube", "-c", str(catalog), "-o", str(out)])
    assert (out / "kustomization.yaml").read_text().splitlines()[
        1
    ] == "# Regenerate with: llama-bake kube --out deploy/base"
    shutil.rmtree(out)


def test_a_missing_summary_names_the_command_that_writes_one(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["kube", "-c", str(write_catalog()), "--summary", str(tmp_path / "gone.json")])
    assert result.exit_code == 2
    assert "cannot read the build summary" in result.output
    assert "llama-bake build --summary-json FILE" in result.output
