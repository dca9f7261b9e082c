"""``parley cloud serve`` (the embedded tier: local Ray + Serve) and ``parley cloud token``."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import typer

from cloud.auth import issue_token
from cloud.config import CloudSettings, load_settings
from shared.errors import NetworkError

app = typer.Typer(no_args_is_help=True, help="The cloud tier on Ray Serve.")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="HTTP port (default 8000)."),
    config: Path = typer.Option(None, help="A TOML settings file (keys: see cloud/config.py)."),
) -> None:
    """Start a local Ray and Serve with the cloud tier; runs until Ctrl-C."""
    settings = load_settings(config, host=host, port=port)
    prepare(settings)
    url = f"http://{settings.host}:{settings.port}"
    typer.echo(f"parley cloud: starting Ray and Serve for {url} ...", err=True)
    stop_event = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: stop_event.set())
    from cloud import deployments

    try:
        start_embedded(settings)
        typer.echo(f"parley cloud serving at {url}  (Ctrl-C to stop)", err=False)
        sys.stdout.flush()
        stop_event.wait()
    finally:
        typer.echo("parley cloud: shutting down", err=True)
        deployments.stop()


def prepare(settings: CloudSettings) -> None:
    """Checks that turn expected failures into one line before Ray starts."""
    from cloud.app import check_models

    check_models(settings)
    settings.secret()
    check_port_free(settings.host, settings.port)


def start_embedded(settings: CloudSettings) -> None:
    """Local Ray (dashboard off, CPUs for the model threads) and Serve with the app."""
    from cloud import deployments

    deployments.start_ray(ray_cpus(settings))
    deployments.run_app(settings)


def ray_cpus(settings: CloudSettings) -> int:
    """Enough logical CPUs for the model replicas, at least the machine's count."""
    if settings.ray_num_cpus:
        return settings.ray_num_cpus
    needed = (settings.llm_threads * settings.llm_replicas
              + settings.tts_threads * settings.tts_replicas)
    return max(os.cpu_count() or 2, needed)


def check_port_free(host: str, port: int) -> None:
    """``NetworkError`` (one line) when ``host:port`` cannot be listened on."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"is unusable ({exc})"
            raise NetworkError(f"port {port} on {host} {why}; pick another with --port") from exc


@app.command()
def token(
    device: str = typer.Option(..., "--device", help="Device id (letters, digits, - and _)."),
    ttl: int = typer.Option(None, "--ttl", help="Seconds the token is valid (default 1 day)."),
    config: Path = typer.Option(None, help="A TOML settings file."),
) -> None:
    """Print a bearer token for a device, signed with the tier's secret."""
    settings = load_settings(config)
    typer.echo(issue_token(settings.secret(), device, ttl or settings.token_ttl_s))
