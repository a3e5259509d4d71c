"""One file per model family; each class takes (config dict, WeightMap)."""

from .codegen import CodeGen
from .gpt_bigcode import GPTBigCode
from .xglm import XGLM

MODEL_CLASSES = {
    "codegen": CodeGen,
    "codegen2": CodeGen,
    "gpt_bigcode": GPTBigCode,
    "santacoder": GPTBigCode,
    "xglm": XGLM,
}
