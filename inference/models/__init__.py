"""One file per model family; each class takes (config dict, WeightMap)."""

from .gpt_bigcode import GPTBigCode

MODEL_CLASSES = {
    "gpt_bigcode": GPTBigCode,
    "santacoder": GPTBigCode,
}
