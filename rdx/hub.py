"""The Hugging Face hub policy, in one place (docs/design.md §4): opt-in and fast-failing.

Downloads happen only with RDX_HUB=1. Without it, a model name must be a local directory
(what save_pretrained or `huggingface-cli download --local-dir` wrote) or already be in the
Hugging Face cache, and anything else fails in a second with one line that says the ways
out, instead of after ~30 s of retries. This module imports neither torch nor transformers,
so the config check that uses it stays fast.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


class HubUnavailable(RuntimeError):
    """A hub model or data set was asked for but cannot be had: one line, no traceback."""


def enabled() -> bool:
    """Downloads are opt-in (RDX_HUB=1): without them a hub name must fail in seconds."""
    return os.environ.get("RDX_HUB", "0") == "1"


def reachable(timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the hub (or to the HTTPS proxy, if one is set)?"""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def offline() -> bool:
    """The user said the hub is off limits (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def local_id(name: str | None) -> str | None:
    """A hub name as is; a local model dir by its absolute path (cache keys, records)."""
    if name is not None and os.path.isdir(os.path.expanduser(name)):
        return os.path.abspath(os.path.expanduser(name))
    return name


def local_snapshot(name: str) -> str:
    """A model's files as a local directory, for a library that takes a path (vLLM): a
    local dir as its absolute path, a hub name as its snapshot in the Hugging Face cache
    (what loading it with rdx wrote, or found). Never downloads: a name with no snapshot
    is HubUnavailable at once, not a wait on the network."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return os.path.abspath(path)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=name, local_files_only=True)
    except Exception as err:  # LocalEntryNotFoundError, or not a valid repo id at all
        raise HubUnavailable(message(name, f"no local snapshot: {type(err).__name__}")) from None


def message(name: str, why: str) -> str:
    """One line: what failed and the three ways out (local dir, HF cache, RDX_HUB=1)."""
    return (
        f"cannot load {name!r} ({why}): it is not a local directory and not in the Hugging "
        "Face cache, and downloads are off; save it where there is hub access "
        f"(huggingface-cli download {name} --local-dir DIR) and pass DIR instead of the "
        "name, or set RDX_HUB=1 to download it, or use the tiny presets "
        "(model=tiny behavior=tiny reward=tiny)"
    )


def load_failure(name: str, kind: str, err: BaseException) -> str:
    """One line for a model or tokenizer that did not load: for a local directory, what is
    wrong with which of its files (never "not a local directory")."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    path = os.path.expanduser(name)
    if not os.path.isdir(path):
        return (
            message(name, type(err).__name__)
            if isinstance(err, OSError)
            else (f"cannot load {name!r} as a {kind}: {first}")
        )
    import json

    for file in sorted(os.listdir(path)):
        if file.endswith(".json"):
            try:
                with open(os.path.join(path, file), "rb") as f:
                    json.load(f)
            except (OSError, ValueError) as bad:
                return (
                    f"cannot load {name!r} as a {kind}: {os.path.join(path, file)} is damaged "
                    f"({type(bad).__name__}: {str(bad).splitlines()[0][:120]}); save the model "
                    "again (save_pretrained) or pass another directory"
                )
    return (
        f"cannot load {name!r} as a {kind}: this local directory's files do not load "
        f"({type(err).__name__}: {first}); save the model again (save_pretrained) or pass "
        "another directory"
    )


def check_name(key: str, name: str | None) -> str | None:
    """Why the model `name` set at config `key` cannot be loaded without waiting on the
    network, as one line; None when it can (a local dir, a cached name, or RDX_HUB=1 with
    the hub answering)."""
    if name is None:
        return None
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return None
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        return f"{key}={name!r}: directory not found"
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id either (HFValidationError)
        return f"{key}={name!r}: neither a directory nor a hub model name"
    if isinstance(cached, str):
        return None
    if enabled():
        if reachable():
            return None
        return (
            f"{key}={name!r}: RDX_HUB=1 but the Hugging Face hub is unreachable; "
            f"download it where there is access (huggingface-cli download {name} "
            f"--local-dir DIR) and pass {key}=DIR"
        )
    return (
        f"{key}={name!r}: not a local directory and not in the Hugging Face cache, and "
        f"downloads are off; save it where there is hub access (huggingface-cli download "
        f"{name} --local-dir DIR) and pass {key}=DIR, or set RDX_HUB=1 to download it"
    )
