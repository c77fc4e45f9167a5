"""How a model's weights become image layers within the registry's layer limit: a single baked file over the
limit is re-split by llama-gguf-split into parts that each fit (``project.max_layer_size``).
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_bake.catalog.models import HfWeights, Model


@dataclass(frozen=True)
class Resplit:
    """How a weights file over the registry's layer limit becomes several layers: llama-gguf-split parts of at
    most ``split_mb`` MB of tensors (its unit; the first part also carries the metadata), at most ``layers``."""

    split_mb: int
    layers: int
    estimate: int  # the parts expected, for `list`


def resplit(model: Model, limit: int) -> Resplit | None:
    """The re-split of ``model``'s weights, when they are one baked file whose recorded size is over ``limit``
    (a split model's parts, a gated download and a size not recorded are left as they are: validate warns)."""
    files = model.weights.files
    size = files[0].size
    gated = isinstance(model.weights, HfWeights) and model.weights.gated
    if model.delivery != "baked" or len(files) != 1 or gated or size is None or size <= limit:
        return None
    # Room under the limit for the first part's metadata (a large vocabulary is tens of MB) and the tar framing.
    margin = min(512_000_000, limit // 4)
    split_mb = max(1, (limit - margin) // 1_000_000)
    expected = -(-size // (split_mb * 1_000_000))
    # llama-gguf-split fills a part until the next tensor would not fit, so two parts in a row always hold more
    # than split_mb: never more than twice the parts a perfect packing needs.
    return Resplit(split_mb, max(2, 2 * expected), expected)
