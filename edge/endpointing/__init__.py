"""End-of-turn detection on the edge: is the user's pause the end of their turn?

``detector.py`` holds the detector (a probability from the pause so far, the partial
transcript and the prosody of the last words) and the policy that turns it into decisions;
``features.py`` the interpretable features; ``eval_set.py`` the synthesized evaluation set;
``train.py`` fits the tiny model shipped as ``model.json``; ``bench.py`` compares the detector
with fixed silence timeouts (``parley bench endpointing``).
"""
