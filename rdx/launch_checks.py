"""Checks of a command line before anything launches, each a one-line answer or None.

rdx.train calls these from its pre-launch check: flags Hydra cannot combine, a sweep
preset given without -m, a SLURM launch with no cluster to take it, and a γ that the
chosen dropout ignores. Each is what a newcomer meets first; each used to end in a
traceback, a silent single run, or raw `sbatch: fatal` lines.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

from rdx.method import GAMMA_MODES

_ONE_JOB_FLAGS = ("--cfg", "-c", "--info", "-i")


def flag_conflict(argv: list[str]) -> str | None:
    """-m with --cfg/--info: Hydra takes one of them and raises a ValueError otherwise."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    shown = next((a for a in argv if a in _ONE_JOB_FLAGS), None)
    if not multirun or shown is None:
        return None
    rest = " ".join(_first_value(a) for a in argv if a not in ("-m", "--multirun"))
    return (
        f"-m and {shown} do not go together: {shown} prints one job's config; drop -m and "
        f"give one value per key, e.g. python -m rdx.train {rest}"
    )


def _first_value(arg: str) -> str:
    """`gamma=0.2,0.4` -> `gamma=0.2`: the first job of a sweep list (a [list] stays)."""
    key, sep, value = arg.partition("=")
    if not sep or value.startswith(("[", "{")) or "," not in value:
        return arg
    return f"{key}={value.split(',')[0]}"


def _bare(key: str) -> str:
    return key.lstrip("+~")


def preset_needs_multirun(preset: str, params: dict, keys: Iterable[str]) -> str | None:
    """A sweeps= preset without -m runs one job of the default settings, labelled with the
    preset's name; that is a forgotten -m unless the command sets the swept keys itself
    (one job of the grid, rerun by hand)."""
    if not params:
        return None
    given = {_bare(k) for k in keys}
    if given & {_bare(k) for k in params}:
        return None
    return (
        f"sweeps={preset}: a sweep preset runs its grid only with -m (python -m rdx.train -m "
        f"sweeps={preset} ...); without -m one job of the defaults would run, labelled "
        f"sweep={preset}"
    )


def slurm_problem(timeout: float = 15.0) -> str | None:
    """Why a SLURM launch would find no cluster, or None when `sinfo` answers."""
    hint = "start the local one with scripts/slurm-up, or run on this machine with launcher=joblib"
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return f"launcher=slurm: no SLURM here (sbatch/sinfo not installed); {hint}"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"launcher=slurm: no SLURM controller answered within {timeout:g} s; {hint}"
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        why = lines[0] if lines else f"sinfo exited {proc.returncode}"
        return f"launcher=slurm: no SLURM cluster answered ({why}); {hint}"
    return None


def ignored_gamma(gamma_given: bool, modes: Iterable[str]) -> str | None:
    """One warning for a γ set on the command line that some job's dropout ignores."""
    ignored = sorted({m for m in modes if m not in GAMMA_MODES})
    if not gamma_given or not ignored:
        return None
    which = " and ".join(f"dropout={m}" for m in ignored)
    return (
        f"gamma is ignored by {which} (recorded as null); γ applies to "
        f"{', '.join(GAMMA_MODES)} (threshold reads dropout.delta)"
    )
