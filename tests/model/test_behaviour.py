"""Behaviour tests of a trained demo model (CheckList-style): what a Spanish help desk expects of
the classifier whatever the metrics say.

- Invariance: accents, casing, greetings and signatures, ticket ids and e-mails do not change
  the answer.
- Typos that keep the meaning (contraseña / contrasena / contraseńa) do not change it either.
- Direction: adding a word that belongs to a category moves probability toward it.
- Minimum functionality: a plain, typical ticket of each category gets that category.

The model is the default linear SVM (what ``make run`` serves first) trained on the simulator's
tickets, and predictions go through the saved pipeline, normaliser included, as serving does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.models import lean_predict_proba
from core.release.bundle import deserialize_model, serialize_model
from core.training.families import build_pipeline, default_params

TEXT = ["short_description", "close_notes"]


@pytest.fixture(scope="module")
def model() -> Any:
    data = generate_tickets(4000, "baseline", seed=5)
    fitted = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    fitted.fit(data[TEXT], data["label"].to_numpy(dtype=object))
    return deserialize_model(serialize_model(fitted))  # what serving loads


def probabilities(model: Any, texts: list[str]) -> pd.DataFrame:
    rows = np.asarray([(text, "") for text in texts], dtype=object)
    return pd.DataFrame(lean_predict_proba(model, rows), columns=list(model.classes_))


def labels(model: Any, texts: list[str]) -> list[str]:
    return [str(label) for label in probabilities(model, texts).idxmax(axis=1)]


MINIMUM = {
    "acceso_contrasenas": "No puedo ingresar al portal, mi contraseña está bloqueada",
    "legalizacion_documentos": "Necesito legalizar el poder autenticado en notaría",
    "pagos_transferencias": "La transferencia no se ve reflejada en la cuenta del beneficiario",
    "certificados": "Solicito un certificado bancario de mi cuenta",
    "documentos_tributarios": "Necesito el certificado de retención en la fuente para la renta",
    "actualizacion_datos": "Quiero actualizar mi dirección y mi teléfono",
    "productos_inversion": "Quiero conocer la rentabilidad de mi fondo de inversión colectiva",
    "extractos_movimientos": "No me llegó el extracto mensual con los movimientos",
    "errores_portal": "El portal transaccional muestra un error y no carga la página",
}


def test_every_category_has_a_minimum_functionality_case(model: Any) -> None:
    assert set(MINIMUM) == set(model.classes_), "one plain ticket per category"


@pytest.mark.parametrize("category", sorted(MINIMUM))
def test_a_plain_ticket_of_each_category_gets_that_category(model: Any, category: str) -> None:
    assert labels(model, [MINIMUM[category]]) == [category]


VARIANTS = [
    # (original, variant that must get the same label)
    ("No puedo iniciar sesión, la contraseña está bloqueada",
     "no puedo iniciar sesion, la contrasena esta bloqueada"),
    ("No puedo iniciar sesión, la contraseña está bloqueada",
     "NO PUEDO INICIAR SESIÓN, LA CONTRASEÑA ESTÁ BLOQUEADA"),
    ("No puedo iniciar sesión, la contraseña está bloqueada",
     "Buenos días, no puedo iniciar sesión, la contraseña está bloqueada. Gracias, saludos"),
    ("La transferencia no se ve reflejada",
     "Hola equipo, la transferencia no se ve reflejada. Cordialmente, Laura Gómez"),
    ("La transferencia no se ve reflejada",
     "La transferencia no se ve reflejada, caso INC-204518, escribir a laura.gomez@empresa.co"),
    ("Solicito un certificado bancario",
     "Solicito un certificado bancario (ticket #88213) para tramites@cliente.com.co"),
    ("Quiero actualizar mi dirección y mi teléfono",
     "quiero actualizar mi direccion y mi telefono"),
]  # fmt: skip


@pytest.mark.parametrize(("original", "variant"), VARIANTS)
def test_accents_casing_greetings_ids_and_emails_do_not_change_the_answer(
    model: Any, original: str, variant: str
) -> None:
    assert labels(model, [variant]) == labels(model, [original])


@pytest.mark.parametrize(
    "typo",
    [
        "olvidé mi contrasena y no puedo entrar",
        "olvidé mi contraseńa y no puedo entrar",  # ń for ñ, a common slip
        "olvide mi contraseña y no puedo entar",
        "olvidé mi contraseña y no puedo entrar",
    ],
)
def test_typos_that_keep_the_meaning_keep_the_answer(model: Any, typo: str) -> None:
    assert labels(model, [typo]) == ["acceso_contrasenas"]


@pytest.mark.parametrize(
    ("base", "added", "toward"),
    [
        ("tengo un problema con mi cuenta", "transferencia", "pagos_transferencias"),
        ("tengo un problema con mi cuenta", "contraseña", "acceso_contrasenas"),
        ("necesito ayuda con un documento", "retención en la fuente", "documentos_tributarios"),
        ("necesito ayuda con un documento", "apostille", "legalizacion_documentos"),
        ("revisar mi solicitud", "extracto", "extractos_movimientos"),
    ],
)
def test_adding_a_category_word_moves_probability_toward_it(
    model: Any, base: str, added: str, toward: str
) -> None:
    before, after = probabilities(model, [base, f"{base} {added}"])[toward]
    assert after > before + 0.05, (before, after)
