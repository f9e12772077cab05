"""Write the bundled example competition(s) into a mirror folder (default examples/mirror/), offline.

The local stack uses that folder as KAGENT_DATA_MIRROR; the slug is `breast-cancer-demo`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.examples import build_breast_cancer_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirror", type=Path, default=Path("examples/mirror"), help="folder to write into")
    args = parser.parse_args(argv)
    folder = build_breast_cancer_demo(args.mirror)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
