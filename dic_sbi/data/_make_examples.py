"""Generator of the example recordings shipped in ``dic_sbi/data`` (``python -m dic_sbi.data._make_examples``).

Each file is a NIX file (Neo's NixIO) holding one membrane-potential trace (float32, mV): the published example
cell of the model (:func:`dic_sbi.data.example_cells`) simulated by dic_sbi with its published protocol and a
noisy current (σ = 1 µA/cm², 4th-order Butterworth at 1 kHz), the transient discarded. They stand in for a
current-clamp recording: ``dic-sbi demo`` and the tutorials read them with :func:`dic_sbi.io.read_recording`,
which detects the spikes in the trace. Regenerating gives the same files' content (fixed seeds; tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: model -> (seed, noise σ in µA/cm², sampling interval in ms)
SETTINGS = {"stg": (2024, 1.0, 0.1), "da": (2025, 1.0, 0.2)}


def example_trace(model: str):
    """The simulated example trace of ``model`` as a ``neo.AnalogSignal`` (mV, float32) and its simulation."""
    import neo
    import quantities as pq

    from ..core.simulator import simulate
    from . import example_cells

    seed, noise, dt_sample = SETTINGS[model]
    g = example_cells()[model]
    res = simulate(model, g[None], noise_std=noise, seed=seed, record_voltage=True, sampling_interval=dt_sample,
                   progress=False)  # fmt: skip
    sig = neo.AnalogSignal(
        res.voltage[0].astype(np.float32)[:, None], units=pq.mV, sampling_period=dt_sample * pq.ms,
        t_start=res.t_start * pq.ms, name="Vm",
        description=f"simulated example cell ({model}, dic_sbi), noisy current sigma={noise} uA/cm2, seed={seed}",
    )  # fmt: skip
    return sig, res


def write_example_recording(model: str, path: str | Path) -> Path:
    """Write the example recording of ``model`` to ``path`` (NIX)."""
    import neo

    from ..io import write_nix_block

    sig, _ = example_trace(model)
    block = neo.Block(name=f"dic_sbi example recording ({model})", simulated=True, model=model)
    seg = neo.Segment(name="sweep 0")
    seg.analogsignals.append(sig)
    block.segments.append(seg)
    return write_nix_block(path, block)


if __name__ == "__main__":  # pragma: no cover
    here = Path(__file__).parent
    for name in SETTINGS:
        print(write_example_recording(name, here / f"example_{name}.nix"))
