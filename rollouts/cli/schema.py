"""``rollouts schema``: the experiment file's JSON Schema (2020-12), from rollouts.spec_models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rollouts.cli.common import EXIT_OK, _write_error, err

SHIPPED = "schema/experiment.schema.json"


def schema_text() -> str:
    from rollouts.spec_models import json_schema  # noqa: PLC0415

    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.out is None:
        print(text, end="")
        return EXIT_OK
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise _write_error(error, args.out) from None
    err(f"wrote {args.out}")
    return EXIT_OK


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "schema",
        help="print the experiment file's JSON Schema (for editors)",
        description="Print the JSON Schema (2020-12) of experiment files, generated from the "
        "same models the validation reads its rules from (rollouts/spec_models.py). Editors "
        "with the YAML language server pick it up from the comment at the top of each "
        f"experiment file ({SHIPPED} in this repository).",
        epilog=f"example:\n  rollouts schema --out {SHIPPED}",
        formatter_class=fmt,
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="write it to FILE instead of stdout")
    p.set_defaults(func=cmd_schema)
