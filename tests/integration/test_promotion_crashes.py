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
