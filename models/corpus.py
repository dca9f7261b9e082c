"""Speech the project synthesizes for its own evaluations (ASR WER, echo, end-of-turn).

Nothing here is downloaded: eSpeak NG voices (``espeakng-loader`` wheel) give many speakers;
the piper voice can be added by the TTS engine. Sentences are conversational requests of the
kind a kiosk or home assistant hears; a seed picks voices, rates and pitches reproducibly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from shared.audio import PROCESSING_RATE, Samples, resample

# eSpeak NG voices that sound clearly different (accent, sex, synthesizer variant).
ESPEAK_VOICES: tuple[str, ...] = (
    "en-us", "en-us+m3", "en-us+f2", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us+f4",
    "en-us+m7", "en-gb-x-rp+f3", "en-us+klatt2",
)

SENTENCES: tuple[str, ...] = (
    "What time do you close tonight?",
    "Can you tell me the weather forecast for tomorrow?",
    "I would like to book a table for two people at seven.",
    "How far is the nearest train station from here?",
    "Please turn off the lights in the kitchen.",
    "What is the capital city of Australia?",
    "Set a timer for fifteen minutes.",
    "My flight was cancelled and I need a new ticket.",
    "Do you have any vegetarian dishes on the menu?",
    "How much does a return ticket to the airport cost?",
    "Remind me to call my mother on Sunday morning.",
    "Where can I find the public library?",
    "Could you play some quiet music in the living room?",
    "I lost my wallet somewhere near the park.",
    "Which bus goes to the city centre?",
    "The printer on the second floor is out of paper.",
    "Tell me a short story about a brave little dog.",
    "Is the museum open on public holidays?",
    "I need to change the delivery address for my order.",
    "How many calories are there in a banana?",
    "Please add milk, eggs and bread to my shopping list.",
    "What is the best way to learn a new language?",
    "Can I pay with a credit card at the counter?",
    "The water in the shower is too cold this morning.",
    "How long does it take to cook brown rice?",
    "Send a message to David saying I will be late.",
    "What movies are playing at the cinema this weekend?",
    "My phone battery drains very quickly since the update.",
    "Where is the closest pharmacy that is still open?",
    "Could you explain how solar panels make electricity?",
    "I want to return these shoes because they are too small.",
    "What is the difference between a virus and bacteria?",
    "Please book a taxi to the hotel for eight o'clock.",
    "How do I reset my password for the online account?",
    "It has been raining all day and the garden is flooded.",
    "Who wrote the novel about the white whale?",
    "Turn the volume down a little, please.",
    "I am looking for a birthday present for my sister.",
    "When does the next ferry leave for the island?",
    "Can you recommend a good restaurant near the river?",
    "The meeting has been moved to Thursday afternoon.",
    "How do you say thank you in Japanese?",
    "My neighbour's dog keeps barking at night.",
    "What should I pack for a week in the mountains?",
    "Is there a parking garage close to the theatre?",
    "Please check if my package has been delivered.",
    "Why is the sky blue during the day?",
    "I would like a large coffee with oat milk.",
    "How many people live in New York City?",
    "Open the garage door and switch on the heating.",
    "The children are playing football in the garden.",
    "Can you help me write an email to my landlord?",
    "What are the opening hours of the swimming pool?",
    "I think the heating system is making a strange noise.",
    "How do I get to the hospital from the main square?",
    "Please cancel my appointment with the dentist.",
    "What is the population of Canada?",
    "We are planning a picnic by the lake on Saturday.",
    "Could you find me a recipe for chocolate cake?",
    "How often should I water a cactus?",
)


@dataclass(frozen=True, slots=True)
class Utterance:
    """A synthesized utterance at the processing rate, with what was said."""

    text: str
    audio: Samples
    voice: str
    rate_wpm: int

    @property
    def seconds(self) -> float:
        return self.audio.size / PROCESSING_RATE


def espeak_utterance(text: str, voice: str = "en-us", rate_wpm: int = 170,
                     pitch: int = 50) -> Utterance:
    """One eSpeak NG utterance of ``text`` at 16 kHz, trimmed of leading/trailing silence."""
    from cloud.engines import espeak

    audio, sr = espeak.synthesize(text, voice=voice, rate_wpm=rate_wpm, pitch=pitch)
    audio = trim_silence(resample(audio, sr, PROCESSING_RATE))
    return Utterance(text=text, audio=audio, voice=voice, rate_wpm=rate_wpm)


def espeak_utterances(n: int, seed: int = 0, sentences: tuple[str, ...] = SENTENCES,
                      voices: tuple[str, ...] = ESPEAK_VOICES) -> list[Utterance]:
    """``n`` utterances cycling through ``sentences``, random voice / rate / pitch per item."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = sentences[i % len(sentences)]
        out.append(espeak_utterance(text, voice=rng.choice(voices),
                                    rate_wpm=rng.randint(145, 190), pitch=rng.randint(35, 65)))
    return out


def trim_silence(audio: Samples, threshold_db: float = -45.0, pad_s: float = 0.05) -> Samples:
    """Cut leading and trailing samples quieter than ``threshold_db`` below full scale."""
    if audio.size == 0:
        return audio
    level = 10 ** (threshold_db / 20)
    loud = np.flatnonzero(np.abs(audio) > level)
    if loud.size == 0:
        return audio[:0]
    pad = int(pad_s * PROCESSING_RATE)
    return audio[max(0, loud[0] - pad): loud[-1] + pad + 1]


def silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * PROCESSING_RATE), dtype=np.float32)


def piper_utterance(text: str, speed: float = 1.0) -> Utterance:
    """One utterance of ``text`` in the embedded piper voice at 16 kHz, trimmed of silence.

    Needs the built voice (``parley models build``); the voice is loaded once per process.
    ``rate_wpm`` is the measured speaking rate of the result.
    """
    from cloud.engines.tts import default_piper

    engine = default_piper()
    audio = trim_silence(resample(engine.synthesize(text, speed=speed), engine.sample_rate,
                                  PROCESSING_RATE))
    seconds = max(audio.size / PROCESSING_RATE, 1e-3)
    return Utterance(text=text, audio=audio, voice="piper-en_US-joe-medium",
                     rate_wpm=round(len(text.split()) / seconds * 60))
