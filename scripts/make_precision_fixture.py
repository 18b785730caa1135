"""Writes Tests/BatonTests/Fixtures/bf16_rounding.json: float32 values (as bit patterns) and what
PyTorch's float32 -> bfloat16 conversion (round to nearest even) makes of them, for the CPU
backend's baton_round_bf16 to match bit for bit. Edge cases first (ties, carries into the exponent,
the largest finite values, infinities, NaN, subnormals, signed zeros), then random values over the
whole range. Run with a Python that has torch: python scripts/make_precision_fixture.py"""
import json
import os
import struct

import numpy as np
import torch


def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


edges = [0.0, -0.0, 1.0, -1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, 1 - 2**-9, 2 - 2**-8, 2 - 2**-9,
         3.4028234663852886e38, -3.4028234663852886e38, 3.3895313892515355e38, float("inf"), float("-inf"),
         1e-45, 1e-40, -1e-40, 1.1754942e-38, 65504.0, 0.1, -0.1, 1 / 3]
values = [bits(np.float32(x)) for x in edges]
values.append(0x7FC00000)  # NaN
values.append(0x7F800001)  # signalling NaN
generator = np.random.default_rng(2024)
values += [int(v) for v in generator.integers(0, 2**32, size=2000, dtype=np.uint64)]
inputs = np.array(values, dtype=np.uint32).view(np.float32)
rounded = torch.from_numpy(inputs.copy()).to(torch.bfloat16).to(torch.float32).numpy().view(np.uint32)
out = os.path.join(os.path.dirname(__file__), "..", "Tests", "BatonTests", "Fixtures", "bf16_rounding.json")
with open(out, "w") as f:
    json.dump({"torch": torch.__version__, "input_bits": [int(v) for v in values], "bf16_bits": [int(v) for v in rounded]}, f)
print(out, len(values))
