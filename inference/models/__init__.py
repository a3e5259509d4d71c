"""One file per model family. Each class has a `Config` read from config.json apart from the weights
(`Config.from_hf(dict)`), and is built as `cls(config, WeightMap, Acceleration)`."""

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
