"""python -m training.experiments: the A/B report from logs, or from a MovieLens replay.

    python -m training.experiments --exposures exposures.jsonl --feedback feedback.tsv \
        --config experiments.json --out reports/ab
    python -m training.experiments --simulate --data-dir data --out reports/ab
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.contract.errors import ConfigError
from services.gateway.experiments import load_experiments
from training.experiments.report import (
    attribute,
    experiment_report,
    read_exposures,
    read_feedback_tsv,
    to_json,
    to_markdown,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--exposures", type=Path, help="the gateway's exposure log (JSON lines)")
    p.add_argument("--feedback", type=Path, help="TSV: user item kind value timestamp")
    p.add_argument("--config", type=Path, help="the experiments file the gateway ran with")
    p.add_argument("--simulate", action="store_true", help="replay the MovieLens holdout")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--window", type=float, default=24 * 3600.0, help="attribution window, s")
    p.add_argument("--out", type=Path, default=Path("reports/ab"))
    args = p.parse_args(argv)
    if args.simulate:
        from training.data import fetch_all, load_movielens
        from training.experiments.simulate import simulate
        from training.split import temporal_split

        fetch_all(args.data_dir)
        split = temporal_split(load_movielens(args.data_dir / "ml-100k").events)
        sim = simulate(split.train, split.test)
        experiments, exposures, feedback = [sim.experiment], sim.exposures, sim.feedback
    else:
        if not (args.exposures and args.feedback and args.config):
            p.error("give --exposures, --feedback and --config, or --simulate")
        try:
            experiments = load_experiments(args.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        exposures, feedback = read_exposures(args.exposures), read_feedback_tsv(args.feedback)
    groups = attribute(exposures, feedback, args.window)
    reports = [
        experiment_report(
            e.name,
            {arm: users for (name, arm), users in groups.items() if name == e.name},
            e.expected_shares(),
            control=e.arms[0].name,
        )
        for e in experiments
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab_report.md").write_text(to_markdown(reports, args.window))
    (args.out / "ab_report.json").write_text(to_json(reports) + "\n")
    print(to_markdown(reports, args.window))
    return 1 if any(r.srm for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
