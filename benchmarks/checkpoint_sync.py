"""Checkpoint sync throughput, rtune beside plain pyarrow and Ray Tune, to local disk or to S3.

    python benchmarks/checkpoint_sync.py --mb 200 --files 8 [--storage local|s3] [--repeat 1]
    python benchmarks/checkpoint_sync.py ... [--skip-raytune]

Workload (issue 5, workload 6): a local checkpoint directory of `mb` MB (1 MB = 2**20 bytes) in
`files` files of random bytes, uploaded to a fresh destination by
- plain `pyarrow.fs.copy_files` (the destination directory is created before the clock starts),
- rtune's commit path, `Storage.commit_checkpoint` (creates the directory, uploads with pyarrow,
  then writes the commit marker),
- Ray Tune: a one-trial run whose trainable times `tune.report({}, checkpoint=...)` of the same
  directory (after one report without a checkpoint), so its figure also includes one result
  round trip to Tune's driver.
`--storage local` writes under a temporary directory; `--storage s3` to moto's S3 server on
127.0.0.1 (cluster/s3_server.py; `python -m cluster.s3_server install` once). One small untimed
upload by pyarrow and by rtune first warms pyarrow's I/O threads and the connection to the store,
and rtune's Storage is opened once, as a trial actor opens it. Ray is started only
for Ray Tune, which is the only one of the three that uses it. Runs alternate; each destination is
deleted after it is measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for cluster.s3_server

import pyarrow.fs as pafs  # noqa: E402
import ray  # noqa: E402

MB = 2**20


def build_source(path: str, mb: int, files: int) -> int:
    """`files` files of random bytes, `mb` MB in all: one random MB repeated, with a per-file
    header so no two files are alike. Returns the bytes written."""
    os.makedirs(path)
    chunk = os.urandom(MB)
    size = mb * MB // files
    total = 0
    for i in range(files):
        with open(os.path.join(path, f"shard_{i:03d}.bin"), "wb") as out:
            header = f"shard {i} {os.urandom(16).hex()}\n".encode()
            out.write(header)
            left = size - len(header)
            while left > 0:
                out.write(chunk[: min(left, MB)])
                left -= MB
        total += size
    return total


def plain_copy(src: str, fs: pafs.FileSystem, dst: str) -> float:
    fs.create_dir(dst, recursive=True)
    started = time.perf_counter()
    pafs.copy_files(src, dst, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    elapsed = time.perf_counter() - started
    fs.delete_dir(dst)
    return elapsed


def rtune_commit(src: str, storage, relpath: str) -> float:
    started = time.perf_counter()
    storage.commit_checkpoint(src, relpath, {})
    elapsed = time.perf_counter() - started
    storage.delete_dir(relpath)
    return elapsed


def raytune_report(src: str, storage_path: str, fs: pafs.FileSystem | None, name: str) -> float:
    from ray import tune

    def report_checkpoint(config):
        tune.report({"step": 0})
        checkpoint = tune.Checkpoint.from_directory(config["src"])
        started = time.perf_counter()
        tune.report({"step": 1}, checkpoint=checkpoint)
        elapsed = time.perf_counter() - started
        with open(config["out"], "w") as out:
            out.write(repr(elapsed))

    out = os.path.join(tempfile.mkdtemp(prefix="raytune_timing_"), "elapsed")
    tune.Tuner(
        report_checkpoint,
        param_space={"src": src, "out": out},
        run_config=tune.RunConfig(
            storage_path=storage_path, storage_filesystem=fs, name=name, verbose=0
        ),
    ).fit()
    with open(out) as timing:
        elapsed = float(timing.read())
    shutil.rmtree(os.path.dirname(out))
    (fs or pafs.LocalFileSystem()).delete_dir(f"{storage_path}/{name}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--storage", choices=["local", "s3"], default="local")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-raytune", action="store_true")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="rtune_bench_sync_")
    server = None
    try:
        src = os.path.join(work, "checkpoint")
        started = time.perf_counter()
        total = build_source(src, args.mb, args.files)
        print(
            f"source: {total / MB:.0f} MB in {args.files} files, built in "
            f"{time.perf_counter() - started:.2f} s"
        )
        if args.storage == "s3":
            from cluster.s3_server import CREDENTIALS, start

            os.environ.update(CREDENTIALS)  # before Ray starts, so trial actors inherit them
            server = start()
            server.create_bucket("bench")
            location = server.uri("bench", "ckpt")
            fs = server.filesystem()
            root = "bench/ckpt"
            raytune_storage, raytune_fs = root, fs
        else:
            location = root = os.path.join(work, "destination")
            fs = pafs.LocalFileSystem()
            raytune_storage, raytune_fs = root, None
        from rtune._durable.storage import Storage

        storage = Storage.at(location)  # once, as each trial actor opens its storage once
        # untimed: pyarrow's I/O threads and the first connection to the store
        warm = os.path.join(work, "warm-up")
        os.makedirs(warm)
        with open(os.path.join(warm, "small"), "wb") as out:
            out.write(os.urandom(1024))
        plain_copy(warm, fs, f"{root}/warm-up")
        rtune_commit(warm, storage, "warm-up")
        runs = [
            ("plain copy_files", lambda n: plain_copy(src, fs, f"{root}/plain_{n}")),
            ("rtune commit_checkpoint", lambda n: rtune_commit(src, storage, f"ckpt_{n}")),
        ]
        if not args.skip_raytune:
            started = time.perf_counter()
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
            print(f"ray start-up: {time.perf_counter() - started:.2f} s")
            runs.append(
                (
                    "ray tune report(checkpoint)",
                    lambda n: raytune_report(src, raytune_storage, raytune_fs, f"raytune_{n}"),
                )
            )
        seconds: dict[str, list[float]] = {}
        for n in range(args.repeat):
            for name, run in runs:
                seconds.setdefault(name, []).append(run(n))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    rates = {name: total / MB / statistics.median(values) for name, values in seconds.items()}
    plain = rates["plain copy_files"]
    print(f"{total / MB:.0f} MB in {args.files} files to {args.storage} (medians of {args.repeat})")
    for name, rate in rates.items():
        share = "" if name == "plain copy_files" else f" ({rate / plain:.0%} of plain copy_files)"
        print(f"{name:28s} {rate:9.1f} MB/s{share}")


if __name__ == "__main__":
    main()
