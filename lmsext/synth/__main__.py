"""CLI: ``python -m lmsext.synth {chatml,moe,random} OUT.gguf [options]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._builders import CHATML_TEMPLATE, _dense, _source, random_shape
from ._model import read_hparams, write_model


def main(argv: list[str] | None = None) -> int:
    """Write one synthetic model to OUT.gguf (not cached) and print a summary line."""
    ap = argparse.ArgumentParser(prog="python -m lmsext.synth", description=__doc__)
    ap.add_argument("kind", choices=["chatml", "moe", "random"])
    ap.add_argument("out", type=Path, help="output .gguf file")
    ap.add_argument("--stories", choices=["auto", "yes", "no"], default="auto",
                    help="derive from stories260K found via LMSEXT_MODELS_PATH (chatml, moe)")
    ap.add_argument("--n-expert", type=int, default=4)
    ap.add_argument("--n-expert-used", type=int, default=2)
    ap.add_argument("--params", type=float, default=2e6, help="random: target parameter count (e.g. 60e6)")
    ap.add_argument("--dtype", choices=["f32", "f16", "q8_0"], default=None,
                    help="default f32 for chatml/moe, f16 for random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None)
    a = ap.parse_args(argv)

    stories = {"auto": None, "yes": True, "no": False}[a.stories]
    t0 = time.perf_counter()
    kw: dict = {"seed": a.seed, "name": a.name}
    if a.kind == "random":
        kw.update(random_shape(int(a.params)), dtype=a.dtype or "f16")
    else:
        kw["dtype"] = a.dtype or "f32"
        src = _source(stories)
        if src is not None:
            kw.update(_dense(read_hparams(src)), weights_from=src)
        if a.kind == "chatml":
            kw["chat_template"] = CHATML_TEMPLATE
        else:
            kw.update(n_expert=a.n_expert, n_expert_used=a.n_expert_used)
    path = write_model(a.out, **kw)
    size = path.stat().st_size
    print(f"{path} {size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
