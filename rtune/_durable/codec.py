"""How a Python object (a searcher's state, a config holding functions, an exception) is stored
inside a JSON record: cloudpickled, then base64. One module for it, beneath both the trial record
and the state files that hold it."""

from __future__ import annotations

import base64
from typing import Any

import cloudpickle


def pack(obj: Any) -> str:
    return base64.b64encode(cloudpickle.dumps(obj)).decode()


def unpack(text: str) -> Any:
    return cloudpickle.loads(base64.b64decode(text))
