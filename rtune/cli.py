"""The `rtune` command line: `rtune demo`, `rtune resume <path>`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a small tuning job on an embedded local Ray")
    demo.add_argument(
        "--storage-path", default=None, help="where results go (default ~/rtune_results)"
    )
    demo.add_argument("--name", default=None, help="experiment name")
    resume = commands.add_parser("resume", help="continue a stopped or crashed experiment")
    resume.add_argument("path", help="the experiment directory or URI")
    resume.add_argument(
        "--no-resume-unfinished",
        dest="resume_unfinished",
        action="store_false",
        help="end unfinished trials instead of resuming them",
    )
    resume.add_argument(
        "--resume-errored",
        action="store_true",
        help="resume errored trials from their latest checkpoint",
    )
    resume.add_argument(
        "--restart-errored", action="store_true", help="restart errored trials from scratch"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from rtune._demo import run_demo

        run_demo(args.storage_path, args.name)
    elif args.command == "resume":
        from rtune.tuner import Tuner

        try:
            tuner = Tuner.restore(
                args.path,
                resume_unfinished=args.resume_unfinished,
                resume_errored=args.resume_errored,
                restart_errored=args.restart_errored,
            )
        except (FileNotFoundError, ValueError) as exc:
            print(f"rtune resume: {exc}", file=sys.stderr)
            return 2
        results = tuner.fit()
        return 1 if results.num_errors else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
