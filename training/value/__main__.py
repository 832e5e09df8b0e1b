"""python -m training.value [--data-dir data] [--out DIR]: train on CDNOW, print the metrics."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from training.data import load_cdnow
from training.value.build import build_value_model


def format_table(metrics: dict) -> str:
    model, base = metrics["model"], metrics["rate_baseline"]
    lines = [f"{'metric':34s} {'model':>14s} {'rate baseline':>14s}"]
    for key in model:
        lines.append(f"{key:34s} {model[key]:14.4f} {base[key]:14.4f}")
    repeat = metrics["spend_spearman_repeat_buyers"]
    lines.append(
        f"{'spend_spearman_repeat_buyers':34s} {repeat['model']:14.4f} "
        f"{repeat['rate_baseline']:14.4f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.value", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=None, help="where user_value.onnx goes")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_cdnow(args.data_dir / "cdnow")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        result = build_value_model(data, out, seed=args.seed, epochs=args.epochs)
        print(json.dumps(result.metrics["protocol"]))
        print(
            f"customers {result.metrics['n_customers']}, "
            f"training {result.metrics['training']['seconds']} s, "
            f"parity {result.manifest_section['parity_max_abs_error']:.2e}"
        )
        print(format_table(result.metrics))
        if args.out:
            print(f"wrote {result.onnx_path}")


if __name__ == "__main__":
    main()
