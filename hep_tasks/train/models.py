"""The three classifiers of the 2019 paper as Keras 3 models (TensorFlow backend).

Every model maps named inputs to class probabilities (0 QCD, 1 tt̄, 2 W+jets) through a
``logits`` Dense layer and a ``probabilities`` softmax, so training can use the numerically stable
cross-entropy on logits and scoring can report exact log-odds (see :func:`logits_model`).

- ``hlf``: the 14 high-level features -> Dense 50-20-10 relu -> 3.
- ``particle_sequence``: the particle list (events, steps, 19), pre-padded with all-zero rows so the
  sequence ends with the lepton -> Masking -> GRU(50) -> 3.
- ``inclusive``: the GRU branch concatenated with the 14 HLF -> Dense 25 relu -> 3.

Padding rows are all zeros; after standardisation a real particle row is never all zeros, so
``Masking(0.0)`` skips exactly the padding.

>>> model_inputs("inclusive")
('hlf', 'particles')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hep_tasks.physics.constants import HLF_FEATURES, PARTICLE_FEATURES
from hep_tasks.processes import LABELS
from hep_tasks.train.hyperparameters import MODELS, SEQUENCE_MODELS

if TYPE_CHECKING:
    import keras

N_CLASSES = len(LABELS)
N_HLF = len(HLF_FEATURES)
N_PARTICLE_FEATURES = len(PARTICLE_FEATURES)


def model_inputs(name: str) -> tuple[str, ...]:
    """The named inputs a model reads: ``hlf`` (events, 14) and/or ``particles`` (events, steps, 19)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    if name == "hlf":
        return ("hlf",)
    return ("hlf", "particles") if name == "inclusive" else ("particles",)


def build_model(name: str, hp: dict[str, Any], seed: int = 0) -> keras.Model:
    """A fresh, compiled-free model ``name`` with hyper-parameters ``hp`` (see ``hyperparameters``)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = {
        "hlf": keras.Input((N_HLF,), name="hlf"),
        "particles": keras.Input((None, N_PARTICLE_FEATURES), name="particles"),
    }
    dropout = float(hp.get("dropout", 0.0))
    branches = []
    if name in SEQUENCE_MODELS:
        x = layers.Masking(mask_value=0.0, name="padding_mask")(inputs["particles"])
        x = layers.GRU(int(hp["gru_units"]), name="gru")(x)
        branches.append(x)
    if name == "hlf":
        x = inputs["hlf"]
        for i, units in enumerate(hp["units"]):
            x = layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
            if dropout:
                x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
        branches.append(x)
    if name == "inclusive":
        x = layers.Concatenate(name="gru_and_hlf")([branches[0], inputs["hlf"]])
        x = layers.Dense(int(hp["dense_units"]), activation="relu", name="dense")(x)
        branches = [x]
    x = branches[0]
    if dropout and name != "hlf":
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(N_CLASSES, name="logits")(x)
    probabilities = layers.Softmax(name="probabilities")(logits)
    used = {k: inputs[k] for k in model_inputs(name)}
    return keras.Model(used, probabilities, name=name)


def logits_model(model: keras.Model) -> keras.Model:
    """The same network ending at the ``logits`` layer (shares its weights)."""
    import keras

    return keras.Model(model.input, model.get_layer("logits").output, name=f"{model.name}_logits")
