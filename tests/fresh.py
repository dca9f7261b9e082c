"""Call a function in a fresh Python process and return what it returns.

eSpeak NG's audio depends on what the process synthesized before (state the library never
resets), so a test that asserts on figures of synthesized audio renders that audio first thing
in a fresh process: the same audio whichever tests were selected and ran before it.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.room import Scene
    from models.corpus import Utterance

_CALL = "; ".join([
    "import importlib, pickle, sys",
    "module, name, args = pickle.loads(sys.stdin.buffer.read())",
    "result = getattr(importlib.import_module(module), name)(*args)",
    "sys.stdout.buffer.write(pickle.dumps(result))",
])


def fresh_call(target: str, *args: object) -> object:
    """``module:function`` called with ``args`` in a new interpreter (results are pickled)."""
    module, name = target.split(":")
    done = subprocess.run([sys.executable, "-c", _CALL], input=pickle.dumps((module, name, args)),
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{target}{args} failed in a fresh process:\n{done.stderr.decode()}")
    return pickle.loads(done.stdout)


def fresh_scene(kind: str, seed: int) -> Scene:
    """``edge.room.build_scene(kind, seed)`` rendered in a fresh process."""
    from edge.room import Scene

    scene = fresh_call("edge.room:build_scene", kind, seed)
    assert isinstance(scene, Scene)
    return scene


def fresh_utterance(text: str, voice: str = "en-us", rate_wpm: int = 170) -> Utterance:
    """``models.corpus.espeak_utterance(text, voice, rate_wpm)`` rendered in a fresh process."""
    from models.corpus import Utterance

    utterance = fresh_call("models.corpus:espeak_utterance", text, voice, rate_wpm)
    assert isinstance(utterance, Utterance)
    return utterance
