"""The part of a search space that integer kernels run: 8-bit activations, exact widths.

A candidate with 8-bit activations runs on int8 kernels (ONNX Runtime's ``QLinearConv`` /
``QGemm`` in static mode, ``DynamicQuantizeMatMul`` in dynamic mode) only where its layers
allow it:

- **weight widths the kernels take exactly**: at most 8 bits in static mode (codes 0-127 times
  8-bit weights never saturate the int16 pair sums of ``vpmaddubsw``, see
  :mod:`spaces.activations`); at most :data:`spaces.config.DYNAMIC_MAX_WEIGHT_BITS` (7) in
  dynamic mode, where a layer with 8-bit weights keeps float activations
  (:mod:`spaces.dynamic_acts`);
- **one weight scale per output row**: ``"channel"`` (else ``"tensor"``). Group-wise scales vary
  along a row, which an int32 accumulator cannot apply, so such layers keep float activations.

:func:`int8_space` is that part of a space, used to seed the latency axis of a search
(``[sensitivity] int8_warm_starts``, :mod:`search.allocation`): every configuration in it is
also in the space it came from.
"""

from __future__ import annotations

import dataclasses

from spaces.config import DYNAMIC_MAX_WEIGHT_BITS, STATIC_MAX_WEIGHT_BITS, preferred_act_mode
from spaces.space import SearchSpace

#: Weight-scale granularities whose scales integer kernels apply, in order of preference.
ROW_GRANULARITIES = ("channel", "tensor")


def int8_space(space: SearchSpace) -> SearchSpace | None:
    """``space`` restricted to candidates that run on int8 kernels throughout, or ``None``
    when it has none (no 8-bit activations offered, or no per-row granularity).

    The mode is static when the space offers it (it covers convolutions too), else the first
    offered; layers keep their widths at or below the mode's widest (a layer with none keeps
    its choices: it stays a float layer); students, pruning and the activation code range
    are the space's.
    """
    s = space.settings
    granularity = next((g for g in ROW_GRANULARITIES if g in s.granularity), None)
    if 8 not in s.act_bits or granularity is None:
        return None
    mode = preferred_act_mode(s.act_mode)
    widest = STATIC_MAX_WEIGHT_BITS if mode == "static" else DYNAMIC_MAX_WEIGHT_BITS
    layer_bits = {}
    for layer in space.layers:
        choices = space.bits_choices(layer)
        layer_bits[layer] = tuple(b for b in choices if b <= widest) or choices
    settings = dataclasses.replace(
        s, layer_bits=layer_bits, act_bits=(8,), act_mode=(mode,), granularity=(granularity,)
    )
    return SearchSpace(
        space.layers, space.students, settings, space.channel_roots, space.head_modules
    )
