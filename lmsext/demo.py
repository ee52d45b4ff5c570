"""``python -m lmsext.demo [MODEL] [--prompt TEXT]``: load a model and stream a reply to the terminal.

MODEL is a GGUF path, a key found on ``$LMSEXT_MODELS_PATH`` / LM Studio's folders / the Hugging Face
cache, or ``owner/repo[/file.gguf]`` on the Hugging Face hub (downloaded when online). The default is
``stories260K``.
"""

from __future__ import annotations

import argparse
import sys

from .client import Client
from .errors import LmsextError


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m lmsext.demo", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="stories260K")
    parser.add_argument("--prompt", default="Tell me a story about a girl and her dog.")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--context-length", type=int, default=1024)
    args = parser.parse_args(argv)
    client = Client()
    try:
        model = client.llm.model(args.model, config={"contextLength": args.context_length})
        print(model.load_result)
        print(f"\n>>> {args.prompt}\n")
        stream = model.respond_stream(args.prompt, config={"maxTokens": args.max_tokens,
                                                          "temperature": args.temperature})
        for fragment in stream:
            sys.stdout.write(fragment.content)
            sys.stdout.flush()
        stats = stream.result().stats
    except LmsextError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tps = f"{stats.tokens_per_second:.0f} tok/s" if stats.tokens_per_second else "- tok/s"
    print(f"\n\n[{stats.predicted_tokens_count} tokens · {tps} · first token "
          f"{(stats.time_to_first_token_sec or 0) * 1000:.1f} ms · {stats.stop_reason}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
