"""python -m training.evaluate {run, report, byo, score}

run     splits → references → ours (retrieval, two-stage, gateway) → tags → 5-fold ratings
        → reports/eval.json, eval_metrics.json, eval.md, *.png      (`make eval`)
run --data NAME   (NAME not movielens) the next-basket evaluation: each user's last basket
        is test; baselines tuned on the last train basket; ours → reports/eval_NAME.{md,json}
        (`make eval DATA=instacart`, training.evaluate.basket_run)
report  rewrite eval.md and the PNGs from an existing eval.json (--data NAME: eval_NAME.md
        from eval_NAME.json); both show reports/external_baselines*.json when present
byo     --train FILE --test FILE [--data DIR | --items FILE --users FILE --config TOML]: train
        ours on that train file (with that item/user metadata, docs/data.md); export our top-100
        lists and rating predictions for its test users as TSV (and score them)
score   --topk FILE / --predictions FILE --split DIR: score any system's TSV answers
session --bundle DIR: is the session live? what a few events do to the next top 10, new and
        known users, no retraining (training.evaluate.session)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.steps.runtime import prefer_passive_omp


def main(argv: list[str] | None = None) -> int:
    prefer_passive_omp()  # before torch loads: every command below imports it lazily
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole evaluation and report")
    run.add_argument("--data-dir", type=Path, default=Path("data"))
    run.add_argument("--data", default="movielens",
                     help="built-in dataset name or dataset folder; not movielens: the "
                     "next-basket evaluation")  # fmt: skip
    run.add_argument("--no-ours", action="store_true", help="next-basket: baselines only")
    run.add_argument("--out", type=Path, default=Path("reports"))
    run.add_argument("--splits", type=Path, default=Path("data/splits"))
    run.add_argument("--artifacts", type=Path, default=Path("runs/eval/artifacts"))
    run.add_argument("--folds", type=int, default=5, help="rating CV folds trained for ours")
    run.add_argument("--tiny", action="store_true", help="tiny bundles (smoke test)")
    run.add_argument("--no-gateway", action="store_true")
    run.add_argument("--train", type=Path, help="bring your own split: train TSV (with --test)")
    run.add_argument("--test", type=Path, help="bring your own split: test TSV")
    run.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when the two-stage answer is worse than retrieval alone",
    )

    cold = sub.add_parser(
        "cold-items",
        help="MovieLens: only the cold-item evaluation (retrieval + ranking); replaces its "
        "section of reports/eval.json and rewrites eval.md",
    )
    cold.add_argument("--data-dir", type=Path, default=Path("data"))
    cold.add_argument("--out", type=Path, default=Path("reports"))
    cold.add_argument("--tiny", action="store_true", help="tiny preset (smoke test)")
    cold.add_argument("--seed", type=int, default=0, help="cold items drawn and models trained")

    report = sub.add_parser("report", help="eval.md + PNGs from reports/eval.json")
    report.add_argument("--out", type=Path, default=Path("reports"))
    report.add_argument(
        "--data", default="movielens", help="not movielens: eval_<data>.md from eval_<data>.json"
    )

    byo = sub.add_parser("byo", help="train on your train TSV, export answers for your test TSV")
    byo.add_argument("--train", type=Path, required=True)
    byo.add_argument("--test", type=Path, required=True)
    byo.add_argument("--out", type=Path, default=Path("runs/eval/byo"))
    byo.add_argument("--data-dir", type=Path, default=Path("data"))
    byo.add_argument("--artifacts", type=Path, default=Path("runs/eval/artifacts"))
    byo.add_argument("--tiny", action="store_true")
    byo.add_argument("--data", help="items, users and dataset.toml of this dataset (docs/data.md)")
    byo.add_argument("--items", type=Path, help="items file in the data contract's format")
    byo.add_argument("--users", type=Path, help="users file in the data contract's format")
    byo.add_argument("--config", type=Path, help="a dataset.toml for those files")

    score = sub.add_parser("score", help="score TSV answers of any system")
    score.add_argument("--split", type=Path, required=True, help="dir with train.tsv, test.tsv")
    score.add_argument("--topk", type=Path, help="TSV user item rank")
    score.add_argument("--predictions", type=Path, help="TSV user item prediction")
    score.add_argument("--data-dir", type=Path, default=Path("data"))
    score.add_argument("--data", help="dataset whose items the coverage/tag metrics use")
    session = sub.add_parser(
        "session", help="what a few events do to the next top 10 (new and known users)"
    )
    session.add_argument("--bundle", type=Path, required=True, help="bundle dir (or LATEST)")
    session.add_argument("--users", type=int, default=30, help="known users drawn")
    session.add_argument("--seed", type=int, default=0)
    session.add_argument("--out", type=Path, help="write the whole result as JSON here")
    args = parser.parse_args(argv)

    if args.command == "session":
        from training.evaluate.session import SessionConfig
        from training.evaluate.session import main as session_main

        session_main(args.bundle, args.out, SessionConfig(users=args.users, seed=args.seed))
        return 0

    if args.command == "byo" or (args.command == "run" and args.train is not None):
        if args.command == "run" and args.test is None:
            parser.error("--train needs --test")
        from training.data.contract import DataError
        from training.evaluate.byo import bring_your_own

        out = args.out if args.command == "byo" else Path("runs/eval/byo")
        sides = {k: getattr(args, k, None) for k in ("items", "users", "config")}
        try:
            scores = bring_your_own(args.train, args.test, out, args.data_dir, args.artifacts,
                                    tiny=args.tiny, dataset=getattr(args, "data", None),
                                    **sides)  # fmt: skip
        except DataError as exc:
            print(f"error: the train file with its metadata is not a valid dataset:\n{exc}",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(json.dumps(scores, indent=2))
        print(f"answers: {out}/topk.tsv (user item rank), {out}/predictions.tsv "
              "(user item prediction)")  # fmt: skip
        return 0
    if args.command == "score":
        if args.topk is None and args.predictions is None:
            parser.error("give --topk and/or --predictions")
        from training.data.builtin import resolve
        from training.data.dataset import load_dataset
        from training.evaluate.byo import score_files

        items = load_dataset(resolve(args.data_dir, args.data)) if args.data else None
        print(json.dumps(score_files(args.split, args.topk, args.predictions, items), indent=2))
        return 0

    if args.command == "run" and args.data != "movielens":
        from training.evaluate.basket_run import BasketEvalConfig, run_baskets, write_basket_report

        cfg = BasketEvalConfig(dataset=args.data, data_dir=args.data_dir, out_dir=args.out,
                               artifacts_dir=args.artifacts, tiny=args.tiny,
                               ours=not args.no_ours)  # fmt: skip
        results = run_baskets(cfg)
        print(f"[eval] wrote {write_basket_report(results, args.out)} "
              f"in {results['seconds']['total']:.0f}s")  # fmt: skip
        return 0
    if args.command == "report" and args.data != "movielens":
        from training.evaluate.basket_run import write_basket_report

        results = json.loads((args.out / f"eval_{args.data}.json").read_text())
        print(write_basket_report(results, args.out))
        return 0
    from training.evaluate.report import write_report

    if args.command == "report":
        results = json.loads((args.out / "eval.json").read_text())
        print(write_report(results, args.out))
        return 0
    if args.command == "cold-items":
        from training.evaluate.run import EvalConfig, run_cold_items

        cold_cfg = EvalConfig(
            data_dir=args.data_dir, out_dir=args.out, tiny=args.tiny, seed=args.seed
        )
        results = run_cold_items(cold_cfg)
        print(json.dumps(results["cold_items"].get("ranking", {}).get("arms"), indent=1))
        print(f"[eval] wrote {write_report(results, args.out)} (cold-item section rerun)")
        return 0
    from training.evaluate.run import EvalConfig, run_eval

    cfg = EvalConfig(data_dir=args.data_dir, out_dir=args.out, splits_dir=args.splits,
                     artifacts_dir=args.artifacts, folds=args.folds, tiny=args.tiny,
                     gateway=not args.no_gateway)  # fmt: skip
    results = run_eval(cfg)
    path = write_report(results, args.out)
    print(f"[eval] wrote {path} in {results['meta']['seconds']['total']:.0f}s")
    if not results["checks"]["two_stage_not_worse"]:
        print("[eval] WARNING: the two-stage answer is worse than retrieval alone", file=sys.stderr)
        if args.strict:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
