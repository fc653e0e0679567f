"""Trust model and faults (README "Security").

A scenario file runs no code, bad values stop in one line, run folders never clash.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import aigrid_sim
from aigrid_sim import config as cfgmod
from aigrid_sim.api import preflight
from aigrid_sim.errors import ConfigError
from aigrid_sim.results.rundir import clean_stale, is_complete, run_folder_name, write_run
from aigrid_sim.serving.catalog import Catalog
from aigrid_sim.sim.policies import PolicyError, make_policy

ROOT = Path(__file__).resolve().parents[1]
TINY = ["world.cities.max_cities=60", "duration_s=3", "workload.rate_rps=30", "drain_s=60",
        "output.figures=false"]


def check(overrides, scenario="global_agent", config_dir=None):
    """Validate and preflight a config as the CLI does before anything is built."""
    sim = cfgmod.validate(cfgmod.compose(scenario, overrides, config_dir=config_dir))
    preflight(sim)
    return sim


def tree_with(tmp_path: Path, name: str, text: str) -> Path:
    """A user's scenario folder (added to the shipped tree) holding one scenario file."""
    tree = tmp_path / "scenarios"
    (tree / "scenario").mkdir(parents=True, exist_ok=True)
    (tree / "scenario" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return tree


def marker_module(tmp_path: Path, name: str) -> Path:
    """A module that leaves a file behind if it is ever imported."""
    flag = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(flag)!r}, 'w').write('x')\n"
        "from aigrid_sim.sim.policies import BasePolicy\n"
        "class P(BasePolicy):\n    def choose(self, request, view):\n        return 0\n")
    return flag


def cli(args, cwd, env=None, timeout=300):
    e = dict(os.environ, MPLBACKEND="Agg", **(env or {}))
    e.pop("AIGRID_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "aigrid_sim.cli", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- no code


@pytest.mark.parametrize("ref", ["os:system", "subprocess:getoutput", "builtins:eval",
                                 "os:getcwd", "aigrid_sim.sim.policies.base:Request",
                                 "os.path:join", "x:y:z", "../evil:P", "os:__class__"])
def test_policy_reference_calls_nothing_but_policies(ref, tmp_path):
    target = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="key 'policy'"):
        make_policy(ref, {"command": f"touch {target}", "cmd": f"touch {target}"})
    assert not target.exists()


def test_scenario_file_cannot_import_modules(tmp_path, monkeypatch):
    flag = marker_module(tmp_path, "evil_sec1")
    monkeypatch.syspath_prepend(str(tmp_path))
    tree = tree_with(tmp_path, "bad_plugins", """\
        # @package _global_
        plugins: [evil_sec1]
        policy: cheapest_feasible
    """)
    with pytest.raises(ConfigError, match="key 'plugins'.*not opted in"):
        check(TINY, "bad_plugins", tree)
    tree2 = tree_with(tmp_path / "b", "bad_policy", """\
        # @package _global_
        policy: "evil_sec1:P"
    """)
    with pytest.raises(ConfigError, match="key 'policy'.*not opted in"):
        check(TINY, "bad_policy", tree2)
    assert not flag.exists() and "evil_sec1" not in sys.modules


@pytest.mark.parametrize("text, words", [
    ("hydra:\n  callbacks:\n    x:\n      _target_: os.system\n", "hydra.callbacks"),
    ("hydra:\n  job:\n    env_set:\n      AIGRID_PLUGINS: evil\n", "hydra.job"),
    ("hydra:\n  launcher:\n    _target_: os.system\n", "hydra.launcher._target_"),
    ("defaults:\n  - override /hydra/callbacks: x\n  - _self_\n", "hydra/callbacks"),
    ("world:\n  _target_: os.system\n", "world._target_"),
])
def test_hydra_keys_in_scenario_files_are_refused(tmp_path, text, words):
    tree = tree_with(tmp_path, "bad_hydra", "# @package _global_\n" + text)
    with pytest.raises(ConfigError, match=re.escape(words)) as e:
        cfgmod.compose("bad_hydra", [], config_dir=tree)
    assert "bad_hydra.yaml" in str(e.value) and "\n" not in str(e.value)


def test_documented_launcher_settings_stay_allowed(tmp_path):
    tree = tree_with(tmp_path, "sweepy", """\
        # @package _global_
        defaults:
          - override /hydra/launcher: basic
          - _self_
        hydra:
          sweep:
            dir: sweeps
    """)
    cfgmod.compose("sweepy", [], config_dir=tree)


def test_hydra_callback_in_scenario_runs_nothing_from_cli(tmp_path):
    flag = tmp_path / "pwned"
    tree = tree_with(tmp_path, "cb", f"""\
        # @package _global_
        hydra:
          callbacks:
            x:
              _target_: subprocess.getoutput
              cmd: "touch {flag}"
    """)
    p = cli(["scenario=cb", *TINY], tmp_path, env={"AIGRID_SCENARIOS": str(tree)})
    assert p.returncode == 2, p.stderr
    assert "hydra.callbacks" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not flag.exists()


@pytest.mark.parametrize("name", ["../../escaped", "/etc/x", "a/../../b", "..", "~root",
                                  "x\x00y", "name with spaces", "-" * 300])
def test_run_folder_is_always_inside_output_dir(name):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"name": name, "policy": "a/../b:c", "seed": "1/../2"})
    folder = run_folder_name(cfg)
    assert "/" not in folder and "\x00" not in folder and not folder.startswith(".")
    assert Path(folder).name == folder and len(folder) < 255


# ----------------------------------------------------------------------------- user policies


BAD_POLICIES = {
    "raises": ("raise RuntimeError('boom')", "RuntimeError: boom"),
    "none": ("return None", "returned None"),
    "text": ("return 'edge'", "returned 'edge'"),
    "range": ("return 10**6", "returned 1000000"),
    "negative": ("return -7", "returned -7"),
    "float": ("return 0.0", "returned 0.0"),
}


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_user_policy_failures_are_one_line(case, tmp_path, monkeypatch):
    body, words = BAD_POLICIES[case]
    mod = f"bad_pol_{case}"
    (tmp_path / f"{mod}.py").write_text(
        "from aigrid_sim.sim.policies import BasePolicy\n"
        f"class Bad(BasePolicy):\n    def choose(self, request, view):\n        {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PolicyError) as e:
        aigrid_sim.run("global_agent", [*TINY, f"policy={mod}:Bad"], plugins=[mod])
    msg = str(e.value)
    assert f"{mod}:Bad" in msg and words in msg and "Request(id=" in msg and "\n" not in msg


def test_user_policy_failure_exits_2_from_cli(tmp_path):
    (tmp_path / "bad_pol_cli.py").write_text(
        "from aigrid_sim.sim.policies import BasePolicy\n"
        "class Bad(BasePolicy):\n    def choose(self, request, view):\n        return None\n")
    p = cli(["policy=bad_pol_cli:Bad", *TINY, "output.write=false"], tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("aigrid-sim: error: policy 'bad_pol_cli:Bad'")
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("import math\nraise ValueError('bad config x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"cannot import 'broken_plugin': ValueError: bad "
                                          r"config x$"):
        aigrid_sim.run("global_agent", TINY, plugins=["broken_plugin"])


def readme_policy() -> tuple[str, str]:
    """The plugin file and the command the README prints."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# my_policies\.py\n.*?)```", text, re.S).group(1)
    cmd = re.search(r"```bash\n(aigrid-sim plugins=\S+ policy=\S+)", text).group(1)
    return code, cmd


def test_readme_plugin_example_works_as_printed(tmp_path):
    script = Path(sys.executable).parent / "aigrid-sim"
    if not script.exists():
        pytest.skip("console script not installed")
    code, cmd = readme_policy()
    (tmp_path / "my_policies.py").write_text(code)
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("AIGRID_PLUGINS", None)
    line = cmd.replace("aigrid-sim", str(script), 1) + " " + " ".join(TINY)
    p = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "policy=edge_or_core" in p.stdout
    # the same file named only in a scenario file is refused
    p2 = subprocess.run([str(script), "policy=edge_or_core", *TINY], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
    assert p2.returncode == 2 and "unknown policy 'edge_or_core'" in p2.stderr


# ----------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("overrides, words", [
    (["load=inf"], "key 'load': must be a finite number"),
    (["duration_s=inf"], "key 'duration_s': must be a finite number"),
    (["workload.rate_rps=inf"], "key 'workload.rate_rps': must be a finite"),
    (["start_utc_h=nan"], "key 'start_utc_h': must be a finite number"),
    (["workload.rate_rps=1e9"], "key 'workload.rate_rps': the run would generate"),
    (["duration_s=1e7"], "key 'duration_s': the run would generate"),
    (["world.cities.pops_per_city=100000"], "key 'world.cities.pops_per_city'"),
    (["world.core.sites=[]"], "key 'world.core.sites': must not be empty"),
    (["workload.apps.0.tokens.out_max=-5"], "key 'workload.apps[0].tokens.out_max'"),
    (["routing.staleness_s=1e-9"], "key 'routing.staleness_s': 1e-09 s would schedule"),
    (["faults.detection_s=1e-9"], "key 'faults.detection_s'"),
    (["world.regional.gpus=3"], "key 'world.regional.gpus': 3 GPUs is not a whole number of "
                                "replicas of llama-3.3-70b-fp8 on H100 (2 GPUs each)"),
    (["+workload.arrivals.flash_crowds=[{factor:inf}]"], "flash_crowds[0].factor"),
    (["workload.apps=[]"], "key 'workload.apps': must not be empty"),
    (["seed=-1"], "key 'seed'"),
    (["world.edge.gpus=1e300"], "world.edge.gpus"),
])
def test_issue_examples_stop_in_one_line(overrides, words):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        check(["world.cities.max_cities=60", *overrides])
    assert words in str(e.value) and "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 5


def test_trace_repeat_is_stopped_by_the_estimate():
    with pytest.raises(ConfigError, match="key 'trace.repeat': the run would generate"):
        check(["trace.repeat=100000000"], "trace_replay")


def test_memory_budget_env(monkeypatch):
    monkeypatch.setenv("AIGRID_MAX_MEMORY_GB", "0.05")
    with pytest.raises(ConfigError, match=r"key 'duration_s'.*AIGRID_MAX_MEMORY_GB"):
        check(["world.cities.max_cities=60", "workload.rate_rps=1000", "duration_s=600"])
    with pytest.raises(ConfigError, match=r"key 'world.cities.max_cities'.*AIGRID_MAX_MEMORY"):
        check(["workload.rate_rps=10", "duration_s=1"])
    monkeypatch.setenv("AIGRID_MAX_MEMORY_GB", "lots")
    with pytest.raises(ConfigError, match="AIGRID_MAX_MEMORY_GB"):
        check(["world.cities.max_cities=60"])


def test_a_multiple_of_the_replica_size_runs():
    check(["world.cities.max_cities=60", "world.regional.gpus=4"])


@pytest.mark.parametrize("field, value", [("price_per_hour", -1.0),
                                          ("price_per_hour", float("nan")),
                                          ("price_per_hour", float("inf")),
                                          ("memory_gb", 0)])
def test_catalogue_prices_are_checked(field, value):
    raw = yaml.safe_load((ROOT / "aigrid_sim/data/catalog.yaml").read_text())
    raw["gpus"]["H100"][field] = value
    with pytest.raises(ConfigError, match=f"gpus.H100.{field}"):
        Catalog(raw, "mine.yaml")


# ----------------------------------------------------------------------------- run folders


def test_unwritable_output_fails_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="key 'output.dir'"):
        aigrid_sim.run("global_agent", ["duration_s=600", "workload.rate_rps=2000"],
                       out_dir=blocker / "sub")
    assert time.perf_counter() - t0 < 10  # refused before simulating 1.2 M requests


def _writer(result, root, barrier, q):
    try:
        barrier.wait(60)
        q.put(str(write_run(result, root, figures=False)))
    except BaseException as e:  # noqa: BLE001
        q.put(f"ERROR {type(e).__name__}: {e}")


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_100_concurrent_writers_leave_one_complete_folder(tmp_path):
    r = aigrid_sim.run("global_agent", TINY)
    ctx = mp.get_context("fork")
    n = 100
    barrier, q = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(r, tmp_path, barrier, q)) for _ in range(n)]
    for p in procs:
        p.start()
    out = [q.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(60)
    errors = [o for o in out if o.startswith("ERROR")]
    assert not errors, errors[:3]
    assert all(p.exitcode == 0 for p in procs)
    folders = [p for p in tmp_path.iterdir()]
    assert len(folders) == 1 and is_complete(folders[0]), [f.name for f in folders]
    assert set(out) == {str(folders[0])}
    assert len(aigrid_sim.results.load_run(folders[0])["requests"]) == len(r.requests)


def test_replace_and_stale_temporary_folders(tmp_path):
    r = aigrid_sim.run("global_agent", TINY)
    old = tmp_path / ".tmp-killed-run"
    old.mkdir()
    (old / "requests.parquet").write_text("half")
    two_days = time.time() - 2 * 86_400
    os.utime(old, (two_days, two_days))
    fresh = tmp_path / ".tmp-running-now"
    fresh.mkdir()
    a = write_run(r, tmp_path, figures=False)
    assert not old.exists() and fresh.exists() and is_complete(a)
    b = write_run(r, tmp_path, figures=False, replace=True)
    assert a == b and is_complete(b)
    assert clean_stale(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a.name, fresh.name])


# ----------------------------------------------------------------------------- sweeps


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    st = Path(f"/proc/{pid}/stat")
    return not (st.exists() and st.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc and ps")
def test_killed_sweep_stops_its_workers(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    p = subprocess.Popen(
        [sys.executable, "-m", "aigrid_sim.cli", "--multirun", "seed=1,2,3,4,5,6,7,8",
         "hydra.launcher.n_jobs=2", "world.cities.max_cities=200", "duration_s=60",
         "workload.rate_rps=400", "output.figures=false"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = _children(p.pid)  # loky workers (and its resource tracker)
    assert workers, "the sweep started no workers"
    time.sleep(3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t0 = time.time()
    while time.time() - t0 < 60 and any(_alive(w) for w in workers):
        time.sleep(0.5)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers still running {time.time() - t0:.0f} s after the parent died"
    done = [d for d in (tmp_path / "results").glob("*") if not d.name.startswith(".")] \
        if (tmp_path / "results").exists() else []
    assert len(done) < 8
    assert math.isfinite(time.time() - t0)
