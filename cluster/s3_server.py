"""A real S3-compatible server on 127.0.0.1, for tests and for people: moto's standalone server.

    python -m cluster.s3_server install            # once: its own virtualenv, .venv-moto
    python -m cluster.s3_server start --port 9000  # prints the env and a storage URI to use
    python -m cluster.s3_server stop --port 9000

moto lives in its own virtualenv because installing `moto[server]` beside Ray downgrades
python-dateutil. rtune talks to it through pyarrow's S3FileSystem exactly as it would to AWS:
`s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1`, credentials
from the environment (moto accepts any).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTO_VENV = os.environ.get("RTUNE_MOTO_VENV", os.path.join(REPO, ".venv-moto"))
MOTO_REQUIREMENT = "moto[server]>=5,<6"
HOST = "127.0.0.1"
REGION = "us-east-1"
# moto accepts any credentials; these are what the tests and the drivers they start use
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIARTUNEEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY": "rtune-example-secret-4f1c9",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def moto_server_bin() -> str:
    return os.path.join(MOTO_VENV, "bin", "moto_server")


def install() -> None:
    """Create .venv-moto with moto's server (no-op when it is there)."""
    if os.path.exists(moto_server_bin()):
        return
    subprocess.run([sys.executable, "-m", "venv", MOTO_VENV], check=True)
    pip = os.path.join(MOTO_VENV, "bin", "pip")
    subprocess.run([pip, "install", "-q", MOTO_REQUIREMENT], check=True)


@dataclass
class S3Server:
    """A running moto server; `uri(bucket, prefix)` is a storage path rtune accepts."""

    port: int
    pid: int

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def uri(self, bucket: str, prefix: str = "") -> str:
        path = f"{bucket}/{prefix}".rstrip("/")
        return f"s3://{path}?endpoint_override={self.endpoint}&scheme=http&region={REGION}"

    def filesystem(self, **options):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            **options,
            endpoint_override=self.endpoint,
            scheme="http",
            region=REGION,
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, bucket: str) -> None:
        self.filesystem(allow_bucket_creation=True).create_dir(bucket)

    def stop(self) -> None:
        _stop(self.pid)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start(port: int | None = None, timeout_s: float = 30, log_path: str | None = None) -> S3Server:
    """Start moto's server on 127.0.0.1 and wait until it answers."""
    if not os.path.exists(moto_server_bin()):
        raise RuntimeError(
            f"moto's server is not installed at {MOTO_VENV}: run `python -m cluster.s3_server "
            "install` (make test does)"
        )
    port = port or free_port()
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [moto_server_bin(), "-H", HOST, "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = S3Server(port, process.pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode} on port {port}")
        try:
            urllib.request.urlopen(f"http://{server.endpoint}/", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise TimeoutError(f"moto_server did not answer on {server.endpoint} in {timeout_s} s")


def _stop(pid: int, timeout_s: float = 1) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description="moto's S3-compatible server on 127.0.0.1")
    parser.add_argument("command", choices=["install", "start", "stop"])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--bucket", default="rtune")
    args = parser.parse_args()
    pid_file = os.path.join(REPO, f".moto-{args.port}.pid")
    if args.command == "install":
        install()
    elif args.command == "start":
        server = start(args.port)
        with open(pid_file, "w") as out:
            out.write(str(server.pid))
        server.create_bucket(args.bucket)
        for key, value in CREDENTIALS.items():
            print(f"export {key}={value}")
        print(f"# storage_path: {server.uri(args.bucket, 'experiments')}")
    else:
        with open(pid_file) as src:
            _stop(int(src.read()))
        os.remove(pid_file)


if __name__ == "__main__":
    main()
