"""Static checks of the deployment and monitoring files.

No docker engine or Grafana runs here, so these tests check what can be checked
offline: the compose file against the compose spec, that the pieces agree with
each other (service names, ports, mounts, datasource uid), that every PromQL
expression names only metrics recycle/serve/metrics.py exports, and, where promtool is
installed, that the Prometheus config and the queries parse.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from recycle.serve.metrics import ApiMetrics, ProposerMetrics, WorkerMetrics

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "monitoring" / "prometheus.yml"
GRAFANA = ROOT / "monitoring" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "recycle.yml"
DASHBOARD = GRAFANA / "dashboards" / "recycle.json"

RECYCLE_SUBCOMMANDS = {"api", "proposer", "worker"}
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# Host paths a compose mount may name without them existing in the repo: the
# checkpoint folder is the user's (docker creates an empty one if missing).
USER_HOST_PATHS = {"checkpoints"}
# Grafana variables, replaced by plain PromQL before promtool parses a query.
GRAFANA_VARIABLES = {"$search": ".*", "$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}
METRIC_NAME = re.compile(r"\brecycle_[A-Za-z0-9_:]*")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text: str) -> str:
    """Compose-style ${VAR:-default} with the environment left empty: the default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", text)


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def exported_metric_names() -> set[str]:
    """Every sample name the services can export, as Prometheus sees them."""
    registry = CollectorRegistry()
    for metrics in (WorkerMetrics, ProposerMetrics, ApiMetrics):
        metrics.create(registry)
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def recycle_command(service: dict) -> list[str] | None:
    command = service.get("command")
    if isinstance(command, str):
        command = command.split()
    return command if command and command[0] == "recycle" else None


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return interpolate(command[command.index(flag) + 1])


def service_port(command: list[str]) -> int:
    """The port a recycle process serves /metrics on."""
    return int(option(command, "--port" if command[1] == "api" else "--metrics-port"))


def mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume, short or long syntax, interpolated."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = interpolate(volume).split(":")[:2]
        else:
            source, target = interpolate(volume.get("source", "")), volume["target"]
        out.append((source, target))
    return out


def is_host_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def mount_target(service: dict, source: str) -> str:
    for mounted, target in mounts(service):
        if is_host_path(mounted) and (ROOT / mounted).resolve() == (ROOT / source).resolve():
            return target
    raise AssertionError(f"{source} is not mounted")


def iter_panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))  # a collapsed row holds its panels


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel query and every query-type template variable."""
    found = []
    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target.get('refId')}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            found.append((f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query))
    return found


# --- docker-compose.yml ---------------------------------------------------------------


def test_compose_matches_the_compose_spec():
    checker = Path(sys.executable).parent / "check-jsonschema"
    if not checker.exists():
        pytest.fail(f"{checker} not found: install the test extras (pip install -e '.[test]')")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_every_service(services):
    assert {"redis", "api", "proposer", "worker", "worker-gpu", "prometheus", "grafana"} <= set(services)


def test_images_are_pinned(services):
    for name, service in services.items():
        image = interpolate(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag not in ("", "latest"), f"{name}: image {image!r} is not pinned"


def test_redis_keeps_an_append_only_file(services):
    command = services["redis"]["command"]
    command = command.split() if isinstance(command, str) else command
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(target == "/data" and not is_host_path(source) for source, target in mounts(services["redis"]))
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])


def test_recycle_services_run_known_subcommands(services):
    running = {name: recycle_command(service) for name, service in services.items() if recycle_command(service)}
    assert set(running) == {"api", "proposer", "worker", "worker-gpu"}
    for name, command in running.items():
        assert command[1] in RECYCLE_SUBCOMMANDS, f"{name} runs unknown subcommand {command[1]!r}"
    assert running["api"][1] == "api" and running["proposer"][1] == "proposer"
    assert running["worker"][1] == running["worker-gpu"][1] == "worker"


def test_recycle_services_share_settings_and_wait_for_redis(services):
    for name in ("api", "proposer", "worker", "worker-gpu"):
        service = services[name]
        env = service["environment"]
        assert env["RECYCLE_REDIS_URL"].startswith("redis://redis:6379"), name
        assert env["RECYCLE_DATA_DIR"] == "/data", name
        roots = json.loads(env["RECYCLE_ALLOWED_ROOTS"])
        targets = {target for _, target in mounts(service)}
        assert roots and set(roots) <= targets, f"{name}: allowed roots {roots} are not all mounted"
        assert "/data" in targets, name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["api"]["environment"]["RECYCLE_API_TOKEN"]


def test_api_publishes_its_port_and_checks_health(services):
    api = services["api"]
    port = service_port(recycle_command(api))
    assert f"{port}:{port}" in [str(p) for p in api["ports"]]
    assert f":{port}/healthz" in " ".join(api["healthcheck"]["test"])


def test_workers_have_a_fresh_multiprocess_dir(services):
    for name in ("worker", "worker-gpu"):
        directory = services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert directory in services[name]["tmpfs"], f"{name}: {directory} is not a tmpfs"


def test_workers_get_their_shutdown_grace_before_docker_kills_them(services):
    """Docker's SIGKILL comes after the grace in which a worker finishes or hands back its trial."""
    from recycle.settings import Settings

    for name in ("worker", "worker-gpu"):
        grace = services[name]["stop_grace_period"]
        assert re.fullmatch(r"\d+s", grace), grace
        assert int(grace[:-1]) >= Settings().worker_shutdown_grace_s + 5, name


def test_cpu_worker_starts_by_default_and_gpu_worker_needs_its_profile(services):
    assert not services["worker"].get("profiles"), "`docker compose up` must start the CPU worker"
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["environment"]["RECYCLE_DEVICE"] == "cuda"
    assert services["worker"]["environment"]["RECYCLE_DEVICE"] == "cpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") == "all" for d in devices)
    # Its own image, built for CUDA: not the CPU image or the CPU torch index.
    assert interpolate(gpu["image"]) != interpolate(services["worker"]["image"])
    assert interpolate(gpu["build"]["args"]["TORCH_INDEX_URL"]) != CPU_TORCH_INDEX
    assert interpolate(services["worker"]["build"]["args"]["TORCH_INDEX_URL"]) == CPU_TORCH_INDEX


def test_mounted_host_paths_exist(services):
    for name, service in services.items():
        for source, _ in mounts(service):
            if not is_host_path(source):
                continue
            relative = (ROOT / source).resolve().relative_to(ROOT)  # nothing outside the repo
            if str(relative) in USER_HOST_PATHS:
                continue
            assert (ROOT / relative).exists(), f"{name} mounts {source}, which is not in the repo"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, _ in mounts(service):
            if source and not is_host_path(source):
                assert source in declared, f"{name} uses undeclared volume {source!r}"


# --- Prometheus -----------------------------------------------------------------------


def test_prometheus_scrapes_every_recycle_process(services):
    config = load_yaml(PROMETHEUS)
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {}
    for job in config["scrape_configs"]:
        jobs[job["job_name"]] = {t for group in job["static_configs"] for t in group["targets"]}
    expected: dict[str, set[str]] = {}
    for name, service in services.items():
        command = recycle_command(service)
        if command:
            expected.setdefault(f"recycle-{command[1]}", set()).add(f"{name}:{service_port(command)}")
    assert expected == {
        "recycle-api": {"api:8000"},
        "recycle-proposer": {"proposer:9101"},
        "recycle-worker": {"worker:9102", "worker-gpu:9102"},
    }
    assert jobs == expected


def test_prometheus_config_is_mounted_where_the_image_reads_it(services):
    assert mount_target(services["prometheus"], "./monitoring/prometheus.yml") == "/etc/prometheus/prometheus.yml"


def test_promtool_accepts_the_config():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (Debian: apt-get install prometheus)")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana --------------------------------------------------------------------------


def test_datasource_points_at_the_compose_prometheus(services):
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus" and datasource["uid"] == "prometheus"
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)/?", datasource["url"]).groups()
    assert host in services
    assert f"{port}:{port}" in [str(p) for p in services[host]["ports"]]


def test_grafana_mounts_match_the_provisioning(services):
    grafana = services["grafana"]
    assert mount_target(grafana, "./monitoring/grafana/provisioning") == "/etc/grafana/provisioning"
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == mount_target(grafana, "./monitoring/grafana/dashboards")
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_dashboard_identity_and_search_variable(dashboard):
    assert dashboard["uid"] == "recycle"
    assert dashboard["schemaVersion"] >= 36
    (search,) = [v for v in dashboard["templating"]["list"] if v["name"] == "search"]
    query = search["query"]["query"] if isinstance(search["query"], dict) else search["query"]
    assert query == "label_values(recycle_trials_total, search)"


def test_every_panel_uses_the_provisioned_datasource(dashboard):
    uid = load_yaml(DATASOURCES)["datasources"][0]["uid"]
    queried = [p for p in iter_panels(dashboard["panels"]) if p.get("type") != "row"]
    assert queried
    for panel in queried:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == uid, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, variable["name"]


def test_panels_have_unique_ids_and_do_not_overlap(dashboard):
    panels = list(iter_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_queries_name_only_exported_metrics(dashboard, exported_metric_names):
    for where, expr in expressions(dashboard):
        names = set(METRIC_NAME.findall(expr))
        assert names, f"{where}: no recycle metric in {expr!r}"
        unknown = names - exported_metric_names
        assert not unknown, f"{where}: {sorted(unknown)} not exported by recycle/serve/metrics.py"


def test_dashboard_shows_every_metric_family(dashboard, exported_metric_names):
    """A metric added to recycle/serve/metrics.py should get a panel too."""
    used = {name for _, expr in expressions(dashboard) for name in METRIC_NAME.findall(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported_metric_names}
    missing = {f for f in families if not any(u == f or re.fullmatch(re.escape(f) + r"_(total|bucket|sum|count)", u) for u in used)}
    assert not missing, f"no panel shows {sorted(missing)}"


def test_dashboard_has_the_key_panels(dashboard):
    exprs = [" ".join(e.split()) for _, e in expressions(dashboard)]
    for needle in (
        "rate(recycle_trials_total",
        "recycle_trials_in_flight",
        "recycle_queue_depth",
        "sum(recycle_worker_busy) / sum(recycle_worker_processes)",
        "recycle_best_macro_average",
        "recycle_hypervolume",
        'recycle_trials_total{status="failed"',
        "recycle_errors_total",
        "recycle_worker_tasks_total",
        "recycle_http_requests_total",
        "recycle_http_request_seconds_bucket",
    ):
        assert any(needle in e for e in exprs), f"no query with {needle!r}"
    phases = [e for e in exprs if "recycle_trial_seconds_bucket" in e]
    assert any("0.5," in e for e in phases) and any("0.95," in e for e in phases)
    assert all("phase" in e for e in phases)


def test_promtool_parses_every_query(dashboard, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (Debian: apt-get install prometheus)")
    rules = []
    for i, (_, expr) in enumerate(expressions(dashboard)):
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions() -> list[str]:
    """Instructions with line continuations joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    return joined


def test_dockerfile_installs_pinned_cpu_torch_before_the_project():
    instructions = dockerfile_instructions()
    args = dict(re.fullmatch(r"ARG (\w+)=(\S+)", i).groups() for i in instructions if re.fullmatch(r"ARG \w+=\S+", i))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert args["TORCH_VERSION"] == pin.split("==")[1].strip() == "2.13.0"
    assert args["TORCH_INDEX_URL"] == CPU_TORCH_INDEX
    assert re.fullmatch(r"python:3\.11[\w.-]*", args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]

    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)

    runs = [expand(i) for i in instructions if i.startswith("RUN ")]
    torch_step = next(n for n, r in enumerate(runs) if re.search(r"pip install .*torch==2\.13\.0", r))
    project_step = next(n for n, r in enumerate(runs) if re.search(r"pip install (\S+ )*\"?\.(\[[\w,-]+\])?\"?(\s|$)", r))
    assert torch_step < project_step
    assert CPU_TORCH_INDEX in runs[torch_step]
    copies = [n for n, i in enumerate(instructions) if i.startswith("COPY ")]
    assert instructions.index(next(i for i in instructions if expand(i) == runs[torch_step])) < copies[0], (
        "torch should install before the sources are copied, so code changes keep its layer cached"
    )


def test_compose_builds_with_the_dockerfile_torch_version(services):
    for name in ("api", "proposer", "worker", "worker-gpu"):
        assert str(services[name]["build"]["args"]["TORCH_VERSION"]) == "2.13.0", name


def test_dockerignore_keeps_local_state_out():
    patterns = {line.strip().strip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".cache", ".git"} <= patterns
    for needed in ("pyproject.toml", "recycle", "contracts", "merger", "evaluator", "proposer", "api"):
        assert needed not in patterns, f".dockerignore drops {needed}, which the image installs"
