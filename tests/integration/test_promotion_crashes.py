"""The promotion killed with SIGKILL at each step (after the model file, after the pointer, after
the alias), in a real process against MLflow on SQLite and a real store; rerunning the
promotion leaves one champion whose pointer, bundle and MLflow alias agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.release.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    bundle_key,
    load_bundle,
    read_champion,
    serialize_model,
    swap_champion,
    write_bundle,
)
from core.release.manifest import Manifest, MlflowRef
from core.release.promotion import promote_challenger
from core.release.registry import champion_alias, set_champion_alias
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from deployments.stack import children_of, running
from tests.integration.conftest import register_model_version

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TEXT = ["short_description", "close_notes"]

#: Runs in its own process: write the challenger's bundle and promote it, dying at ``step``.
CRASH = """
import os, signal, sys
from pathlib import Path
import core.release.registry, core.io.store, core.release.promotion
from core.release.bundle import deserialize_model, write_bundle
from core.release.manifest import Manifest
from core.release.promotion import promote_challenger
from core.settings import Settings
from core.data.simulate import generate_tickets

home, step = Path(sys.argv[1]), sys.argv[2]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if step == "model_file":
    put = core.io.store.LocalStore.put
    def put_then_die(self, key, data):
        put(self, key, data)
        if key.endswith("model.skops"):
            die()
    core.io.store.LocalStore.put = put_then_die
elif step == "pointer":
    swap = core.release.promotion.swap_champion
    core.release.promotion.swap_champion = lambda *a, **k: (swap(*a, **k), die())[0]
elif step == "alias":
    alias = core.release.registry.set_champion_alias
    core.release.registry.set_champion_alias = lambda *a, **k: (alias(*a, **k), die())[0]
settings = Settings(home=home)
manifest = Manifest.model_validate_json((home / "challenger.json").read_bytes())
model = deserialize_model((home / "challenger.skops").read_bytes())
write_bundle(core.io.store.open_store(settings), (home / "challenger.skops").read_bytes(), manifest)
promote_challenger(settings, manifest, model, generate_tickets(400, "baseline", seed=31))
print("finished without dying")
"""


def _fit(rows: int) -> Any:
    data = generate_tickets(rows, "baseline", seed=30)
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    return model.fit(data[TEXT], data["label"].to_numpy(dtype=object))


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return {"weak": serialize_model(_fit(120)), "strong": serialize_model(_fit(900))}


@pytest.mark.slow
@pytest.mark.parametrize("step", ["model_file", "pointer", "alias"])
def test_a_promotion_killed_at_any_step_is_repaired_by_the_rerun(
    tmp_path: Path, models: dict[str, bytes], step: str
) -> None:
    settings = Settings(home=tmp_path / "home")
    store = open_store(settings)
    old = Manifest(bundle_id="old", family="linear_svm", mlflow=MlflowRef(model_version="1"))
    assert register_model_version(settings) == "1"
    stored = write_bundle(store, models["weak"], old)
    assert swap_champion(store, stored, None)
    set_champion_alias(settings, "1")
    new = Manifest(bundle_id="new", family="linear_svm", mlflow=MlflowRef(model_version="2"))
    assert register_model_version(settings) == "2"
    (settings.home / "challenger.json").write_bytes(new.to_json())
    (settings.home / "challenger.skops").write_bytes(models["strong"])

    killed = subprocess.run(
        [sys.executable, "-c", CRASH, str(settings.home), step],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr[-3000:]
    pointer, _ = read_champion(store)
    assert pointer is not None
    if step == "model_file":  # died before the manifest: the old champion stands untouched
        assert pointer.bundle_id == "old" and champion_alias(settings) == "1"
        assert store.exists(bundle_key("new", MODEL_FILE))
        assert not store.exists(bundle_key("new", MANIFEST_FILE))
    elif step == "pointer":  # the pointer moved, the alias did not follow
        assert pointer.bundle_id == "new" and champion_alias(settings) == "1"
    else:
        assert pointer.bundle_id == "new" and champion_alias(settings) == "2"

    from core.release.bundle import deserialize_model

    challenger = deserialize_model(models["strong"])
    write_bundle(store, models["strong"], new)  # the rerun writes its bundle again
    outcome = promote_challenger(
        settings, new, challenger, generate_tickets(400, "baseline", seed=31)
    )
    assert outcome.promoted, outcome.reason
    pointer, _ = read_champion(store)
    assert pointer is not None and pointer.bundle_id == "new"
    _, manifest = load_bundle(store, pointer.bundle_id, pointer.manifest_file_sha256)
    assert manifest.model_version == pointer.model_version == champion_alias(settings) == "2"


HOLD = """
import sys, time
import core.release.promotion as promotion
import flows.cli

real = promotion.promote_if_better
def promote_slowly(*args, **kwargs):
    print("holding the promotion lock", flush=True)
    time.sleep(3600)
    return real(*args, **kwargs)

promotion.promote_if_better = promote_slowly
sys.exit(flows.cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_training_killed_while_promoting_leaves_no_lock_behind(
    tmp_path: Path, prefect_api: str
) -> None:
    """The lock was a Prefect concurrency slot whose lease lived in the memory of the killed
    command's own Prefect server: the next training then waited on it for good. A lease in the
    operational database whose holder process is gone is free again; meanwhile ``tickets
    status`` names its holder."""
    import os
    import signal
    import time

    from flows.train import train

    data = tmp_path / "tickets.csv"
    generate_tickets(300, "baseline", seed=5).to_csv(data, index=False)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "TICKETS_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)  # its own Prefect server, as a command run by hand has
    args = ["train", "--data", str(data), "--families", "logistic_regression", "--trials", "1"]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, *args, "--profile", "fast"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert holder.stdout is not None
        deadline = time.monotonic() + 300
        for line in holder.stdout:
            if "holding the promotion lock" in line or time.monotonic() > deadline:
                break
        tickets = str(Path(sys.executable).parent / "tickets")
        shown = subprocess.run(
            [tickets, "status"], env=env, capture_output=True, text=True, timeout=120
        )
        assert f"promotion lock: held by process {holder.pid} " in shown.stdout, shown.stdout
        assert "promoting" in shown.stdout
    finally:
        children = children_of(holder.pid)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    assert children, "the command ran a Prefect server of its own"
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(running(pid) for pid in children), "its Prefect server outlived it"
    settings = Settings(
        home=home, families=("logistic_regression",), trials=1, profile="fast", label_audit=False
    )
    summary = train(settings=settings, data_path=str(data))
    assert summary.promoted and summary.promotion_reason == "no champion yet"
    shown = subprocess.run(
        [tickets, "status"], env=env, capture_output=True, text=True, timeout=120
    )
    assert "promotion lock: free" in shown.stdout


#: Holds the promotion lock in a process of its own until killed.
LOCKER = """
import sys, time
from pathlib import Path
from core.settings import Settings
from tasks.locks import promotion_lock
with promotion_lock(Settings(home=Path(sys.argv[1])), "another promotion"):
    print("held", flush=True)
    time.sleep(3600)
"""


@pytest.mark.slow
def test_sigterm_while_waiting_for_the_promotion_lock_stops_the_training_at_once(
    tmp_path: Path,
) -> None:
    """It took 142 s and ended in a traceback while the Prefect slot was awaited."""
    import os
    import signal

    data = tmp_path / "tickets.csv"
    generate_tickets(300, "baseline", seed=5).to_csv(data, index=False)
    home = tmp_path / "home"
    env = {**os.environ, "TICKETS_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(home)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    tickets = str(Path(sys.executable).parent / "tickets")
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "held"
        command = [tickets, "train", "--data", str(data), "--families", "logistic_regression"]
        training = subprocess.Popen(
            [*command, "--trials", "1", "--profile", "fast"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert training.stdout is not None
        seen = []
        for line in training.stdout:
            seen.append(line)
            if "waiting for the promotion lock" in line:
                break
        assert "another promotion" in seen[-1], "".join(seen[-20:])
        training.send_signal(signal.SIGTERM)
        output, _ = training.communicate(timeout=60)
        assert training.returncode != 0
        assert "Traceback" not in output, output[-3000:]
    finally:
        locker.kill()
        locker.wait(timeout=30)
