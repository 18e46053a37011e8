"""The authors' DFCAN (github qc17-THU/DL-SR) under TensorFlow 2, driven over stdin/stdout.

Runs in a separate Python that has TensorFlow and tf_keras (Keras 2), never in livesim's own:
it imports neither livesim nor torch. The authors' model code is read from their checkout at
run time (``src/models/common.py`` and ``src/models/DFCAN16.py``) and imported with only the
TF1 -> TF2 renames of ``RENAMES`` applied (each must match exactly once or more, else the
driver stops); nothing of theirs is copied into livesim.

Protocol (one JSON object per line): the driver prints ``{"ready": ...}`` once the model is
built, weights loaded and one warm-up prediction done; then for each line ``{"run": N}`` it
predicts N times and prints the wall and CPU seconds of each; ``{"output": PATH}`` saves its
last output (NHWC float32 .npy); ``{"quit": true}`` ends it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

# TF1 -> TF2 renames (module paths of Keras 2.2.4 -> tf_keras; tf.* ops moved in TF2); the
# legacy TF1 resize (tf.compat.v1.image.resize_images) keeps the authors' sampling.
RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "common.py": (
        ("from keras.layers.convolutional import Conv2D, Conv3D",
         "from tf_keras.layers import Conv2D, Conv3D"),
        ("from keras.layers.advanced_activations import LeakyReLU",
         "from tf_keras.layers import LeakyReLU"),
        ("from keras import backend as K", "from tf_keras import backend as K"),
        ("tf.erf(", "tf.math.erf("),
        ("tf.fft2d(", "tf.signal.fft2d("),
        ("tf.fft3d(", "tf.signal.fft3d("),
        ("tf.image.resize_images(", "tf.compat.v1.image.resize_images("),
        ("tf.depth_to_space(", "tf.nn.depth_to_space("),
    ),
    "DFCAN16.py": (
        ("from keras.models import Model", "from tf_keras.models import Model"),
        ("from keras.layers.core import Activation", "from tf_keras.layers import Activation"),
        ("from keras.layers import Input, add, multiply, Lambda",
         "from tf_keras.layers import Input, add, multiply, Lambda"),
        ("from keras.layers.convolutional import Conv2D", "from tf_keras.layers import Conv2D"),
    ),
}


def load_authors_models(checkout: Path) -> types.ModuleType:
    """Import the authors' common.py and DFCAN16.py (renamed) as package ``dlsr_models``.

    The renamed sources are written to a scratch package folder and imported from there like
    any module (no eval/exec of text); the folder is never inside the repository.
    """
    models_dir = checkout / "src" / "models"
    if not models_dir.is_dir():
        raise SystemExit(f"{checkout}: no src/models folder (expected a DL-SR checkout)")
    scratch = Path(tempfile.mkdtemp(prefix="livesim-dlsr-")) / "dlsr_models"
    scratch.mkdir()
    (scratch / "__init__.py").write_text("", encoding="utf-8")
    for file_name, renames in RENAMES.items():
        path = models_dir / file_name
        source = path.read_text(encoding="utf-8")
        for old, new in renames:
            if old not in source:
                raise SystemExit(f"{path}: expected text not found: {old!r}")
            source = source.replace(old, new)
        (scratch / file_name).write_text(source, encoding="utf-8")
    sys.path.insert(0, str(scratch.parent))
    module = types.ModuleType("dlsr_models")
    for file_name in RENAMES:
        module = importlib.import_module(f"dlsr_models.{file_name.removesuffix('.py')}")
    return module  # DFCAN16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, required=True, help="DL-SR checkout")
    parser.add_argument("--weights", type=Path, required=True, help="Keras .h5 weights")
    parser.add_argument("--input", type=Path, required=True, help="(1, H, W, C) float32 .npy")
    args = parser.parse_args()

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np
    import tensorflow as tf

    dfcan16 = load_authors_models(args.checkout)
    x = np.load(args.input).astype(np.float32)
    model = dfcan16.DFCAN(tuple(int(d) for d in x.shape[1:]), scale=2)
    model.load_weights(str(args.weights))
    start = time.perf_counter()
    y = model.predict(x, verbose=0)
    warmup_s = time.perf_counter() - start
    print(json.dumps({
        "ready": True, "tensorflow": tf.__version__, "warmup_s": warmup_s,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "parameters": int(model.count_params()), "output_shape": list(y.shape)}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        if "run" in command:
            times, cpu = [], []
            for _ in range(int(command["run"])):
                start, cpu_start = time.perf_counter(), time.process_time()
                y = model.predict(x, verbose=0)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
            print(json.dumps({"seconds": times, "cpu_seconds": cpu}), flush=True)
        elif "output" in command:
            np.save(command["output"], np.asarray(y, dtype=np.float32))
            print(json.dumps({"saved": command["output"]}), flush=True)


if __name__ == "__main__":
    main()
