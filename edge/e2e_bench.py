"""``parley bench e2e``: Parley against a naive cascade, same inputs, same machine, same run.

Both run the real thing end to end — a local cloud tier on Ray Serve, a file-mode edge in
real time over WebRTC, the simulated room echo — on the benchmark scenes (several files,
several turns, two barge-ins). Latency is read from the files: the end of each user turn is
known (the scenes are synthesized), the first reply sample is found on the speaker track.

- ``parley``: speculative ASR at each pause, the end-of-turn detector, streamed clauses.
- ``naive``: wait for a fixed 500 ms of silence, then recognize, then the whole reply text,
  then synthesize all of it, then send (the cloud's ``reply_mode = "naive"``).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.config import EdgeSettings, load_settings
from edge.demo import WATERFALL, local_cloud, summary
from edge.scenes import bench_scenes
from edge.session import DemoResult, run_file_session
from shared.cli import stdout_to_stderr

bench_app = typer.Typer(help="End-to-end latency against a naive cascade.")

NAIVE_EDGE = {"endpointing": "timeout", "timeout_ms": 500.0, "speculative_asr": False,
              "partial_interval_s": 0.0}
# The whole reply, then one synthesis: no first clause to leave the CPU to.
NAIVE_CLOUD = {"reply_mode": "naive", "llm_rest_after_first_clause_ms": 0.0}


@bench_app.command()
def e2e(
    out_dir: Annotated[Path | None, typer.Option(help="Keep inputs, speaker tracks and the "
                                                 "waterfall figure here.")] = None,
    port: Annotated[int, typer.Option(help="Port of the local cloud tier.")] = 8000,
    repeat: Annotated[int, typer.Option(min=1, help="Runs of each scene per mode.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run both cascades over the benchmark scenes and print p50/p95 of every stage."""
    folder = out_dir or Path(tempfile.mkdtemp(prefix="parley-e2e-"))
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for scene in bench_scenes():
        path = folder / f"{scene.name}.wav"
        scene.write(path)
        inputs.append(path)
    base = load_settings()
    runs: dict[str, list[DemoResult]] = {}
    with stdout_to_stderr():
        for mode in ("parley", "naive"):
            runs[mode] = run_mode(mode, base, inputs, folder, port, repeat)
    report = build_report(runs)
    try:
        report["figure"] = str(draw_waterfall(report, folder / "waterfall.png"))
    except ImportError:  # a figure is a nice-to-have: never lose the measured numbers
        report["figure"] = "not drawn: matplotlib is missing (pip install -e .[dev])"
    report["out_dir"] = str(folder)
    typer.echo(json.dumps(report) if as_json else render(report))


def run_mode(mode: str, base: EdgeSettings, inputs: list[Path], folder: Path, port: int,
             repeat: int) -> list[DemoResult]:
    edge = base.model_copy(update=NAIVE_EDGE) if mode == "naive" else base
    cloud = NAIVE_CLOUD if mode == "naive" else {}
    results = []
    with local_cloud(port, cloud) as (url, token):
        settings = edge.model_copy(update={"cloud_url": url, "token": token})
        for i in range(repeat):
            for wav in inputs:
                out = folder / f"{wav.stem}.{mode}.{i}.speaker.wav"
                results.append(asyncio.run(run_file_session(settings, wav, out, room=True)))
    return results


def build_report(runs: dict[str, list[DemoResult]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for mode, results in runs.items():
        turns = [t for r in results for t in r.turns]
        first = [t["from_files_ms"] for t in turns if t["from_files_ms"] is not None]
        stages = {name: summary([t["latency_ms"][name] for t in turns
                                 if name in t["latency_ms"]]) for name in WATERFALL}
        report[mode] = {
            "turns": len(turns),
            "answered": sum(1 for t in turns if t["reply_text"]),
            "first_reply_sample_ms": summary(first),
            "stages_ms": stages,
            "barge_ins": [b for r in results for b in r.barge_ins],
            "self_report_vs_files_ms": summary([
                t["latency_ms"]["first_sample_played"] - t["from_files_ms"] for t in turns
                if t["from_files_ms"] is not None and "first_sample_played" in t["latency_ms"]]),
            "transcripts": [(t["user_text"], t["reply_text"]) for t in turns],
        }
    p50 = report["parley"]["first_reply_sample_ms"]["p50"]
    naive = report["naive"]["first_reply_sample_ms"]["p50"]
    report["speedup_p50"] = round(naive / p50, 2) if p50 and naive else None
    return report


def draw_waterfall(report: dict[str, Any], path: Path) -> Path:
    """Median time of each stage after the end of speech, Parley vs the naive cascade."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for row, mode in enumerate(("parley", "naive")):
        stages = report[mode]["stages_ms"]
        marks = [(n, stages[n]["p50"]) for n in WATERFALL if stages[n]["p50"] is not None]
        start = 0.0
        for i, (name, at) in enumerate(sorted(marks, key=lambda m: m[1])):
            ax.barh(row, max(at - start, 1.0), left=start, color=f"C{i % 10}",
                    label=name if row == 0 else None)
            start = at
        total = report[mode]["first_reply_sample_ms"]["p50"] or 0.0
        ax.text(start + 20, row, f"{total:.0f} ms", va="center")
    ax.set_yticks([0, 1], ["Parley", "naive cascade"])
    ax.set_xlabel("ms after the end of the user's speech (medians)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("From end of speech to the first reply sample")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render(report: dict[str, Any]) -> str:
    lines = []
    for mode in ("parley", "naive"):
        r = report[mode]
        f = r["first_reply_sample_ms"]
        lines.append(f"{mode:7} turns {r['turns']} answered {r['answered']}  first reply sample "
                     f"p50 {f['p50']} ms p95 {f['p95']} ms")
        for name in WATERFALL:
            s = r["stages_ms"][name]
            if s["p50"] is not None:
                lines.append(f"          {name:24} p50 {s['p50']:7.0f}  p95 {s['p95']:7.0f}")
        for b in r["barge_ins"]:
            lines.append(f"          barge-in: speaker silent {b['silent_after_ms']} ms after "
                         f"the user's onset (reply playing: {b['reply_playing_at_onset']})")
    lines.append(f"speed-up (naive p50 / parley p50): {report['speedup_p50']}")
    lines.append(f"figure: {report['figure']}")
    return "\n".join(lines)

