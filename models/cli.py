"""``parley models ...``: build the embedded models, list them, fetch online ones."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from models import registry

app = typer.Typer(no_args_is_help=True, help="Build, list and fetch the models.")


@app.command()
def build(
    names: Annotated[list[str] | None, typer.Argument(help="Only these models.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when up to date.")] = False,
) -> None:
    """Build the embedded default models into models/build (or $PARLEY_MODELS_DIR)."""
    from models.build import build_all

    typer.echo(f"building models into {registry.models_dir()}")
    results = build_all(names or None, force=force, progress=typer.echo)
    typer.echo(f"{sum(r.ready for r in results)}/{len(results)} models ready")


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List every model of the manifest, its path and whether it is ready."""
    rows = [registry.status(s) for s in registry.load_manifest()]
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    for r in rows:
        mark = "ready" if r.ready else "missing"
        typer.echo(f"{r.name:32} {r.kind:4} {mark:8} {r.path}")


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="A model of the manifest with a URL.")],
    trust_unpinned: Annotated[
        bool, typer.Option(help="Install a file with no sha256 in the manifest (prints it).")
    ] = False,
) -> None:
    """Download a production model that lives online (needs network; checks its sha256)."""
    from models.fetch import fetch_model

    path = fetch_model(registry.spec(name), progress=typer.echo, trust_unpinned=trust_unpinned)
    typer.echo(f"{name} ready at {path}")
