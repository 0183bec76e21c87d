"""The `rtune` command line: `rtune demo`, `rtune resume <path>`, `rtune stop <name or path>`."""

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
    stop = commands.add_parser(
        "stop",
        help="drain a running experiment, from any node of its Ray cluster (as Ctrl+C would)",
        description="Drain a running experiment (as Ctrl+C in its driver would). By name: on the "
        "cluster of RAY_ADDRESS or of `ray start` on this machine. By path or URI: on the cluster "
        "its lease names; when it is not running, says whether it is stopped (and how to resume "
        "it) or finished. Exits 2, within seconds, when no live cluster runs it.",
    )
    stop.add_argument("experiment", help="the experiment's name, or its path or URI")
    stop.add_argument("--force", action="store_true", help="stop at once (as a second Ctrl+C)")
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
    elif args.command == "stop":
        from rtune.control import stop_experiment

        try:
            location = stop_experiment(args.experiment, force=args.force)
        except LookupError as exc:
            print(f"rtune stop: {exc}", file=sys.stderr)
            return 2
        print(f"rtune stop: asked {location} to stop; resume it with: rtune resume {location}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
