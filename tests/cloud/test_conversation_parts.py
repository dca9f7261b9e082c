"""Pure parts of the conversation: clauses, prosody behaviour, context budget, scheduling."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from cloud.conversation.clauses import ClausePolicy, ClauseSegmenter, clean_clause
from cloud.conversation.context import ContextPolicy, ConversationContext, estimate_tokens
from cloud.conversation.ports import ReplyDone
from cloud.conversation.prosody import ProsodyPolicy, reply_style, tts_speed
from cloud.conversation.turn import TurnRecord
from cloud.engines.reply import ModelPool
from cloud.engines.worker import BACKGROUND, NORMAL, URGENT, Batch, Job, StepWorker
from shared.protocol import Prosody


def segment(text: str, policy: ClausePolicy | None = None) -> list[str]:
    seg = ClauseSegmenter(policy)
    out: list[str] = []
    for token in text.split(" "):  # arrives word by word, like tokens
        out += seg.push(token + " ")
    return out + seg.flush()


def test_the_first_clause_is_cut_at_the_first_comma_after_two_words() -> None:
    clauses = segment("Sure thing, the museum opens at nine and closes at five. Enjoy your visit!")
    assert clauses[0] == "Sure thing,"
    assert clauses[-1] == "Enjoy your visit!"


def test_a_clause_is_cut_as_soon_as_its_comma_arrives() -> None:
    seg = ClauseSegmenter()
    assert seg.push("Sure") == [] and seg.push(" thing,") == ["Sure thing,"]
    assert seg.push(" it costs 3.") == []  # after a digit: wait for what follows


def test_without_punctuation_the_first_clause_is_cut_at_a_word_boundary() -> None:
    clauses = segment("the best way to get there is by taking the number five bus downtown")
    assert clauses[0] == "the best way to"
    assert all(len(c.split()) <= 10 for c in clauses)


def test_one_word_then_comma_waits_for_more_words() -> None:
    assert segment("Well, I think so.")[0] == "Well, I think so."


def test_the_reply_stops_after_its_sentence_budget() -> None:
    seg = ClauseSegmenter(ClausePolicy(max_sentences=1))
    out = seg.push("It is sunny today. Tomorrow it will rain. ")
    assert out == ["It is sunny today."] and seg.done
    assert seg.push("More text. ") == [] and seg.flush() == []


def test_a_reply_cut_short_by_its_token_budget_never_ends_on_half_a_sentence() -> None:
    seg = ClauseSegmenter(ClausePolicy(max_sentences=2))
    reply = ("I am sorry, but I cannot look at the clock. I am here to assist you with "
             "your questions and help you plan")  # the budget ran out here
    spoken = [c for word in reply.split(" ") for c in seg.push(word + " ")]
    seg.drop_rest()  # what the reply service does when the budget cut a later sentence
    assert spoken[-1].endswith("clock.")
    assert " ".join(spoken) == "I am sorry, but I cannot look at the clock."


def test_the_reply_is_kept_as_generated_for_the_next_prompt() -> None:
    seg = ClauseSegmenter(ClausePolicy(max_sentences=2))
    spoken = seg.push("You need:\n- two eggs\n- **fresh** milk. Then stir it. And more")
    assert spoken == ["You need:", "- two eggs - fresh milk.", "Then stir it."]
    # what the model wrote (its cache holds these tokens), without the unspoken rest
    assert seg.raw_out == "You need:\n- two eggs\n- **fresh** milk. Then stir it."


def test_a_completed_turn_remembers_the_reply_as_generated() -> None:
    record = TurnRecord(turn_id=1, started=0.0, clauses=["You need:", "- two eggs."])
    assert record.reply_text == "You need: - two eggs."  # interrupted: what was received
    record.done = ReplyDone(prompt_tokens=9, cached_tokens=0, generated_tokens=8, ttft_ms=1.0,
                            queue_ms=0.0, finish="stop", raw_text="You need:\n- two eggs.")
    assert record.reply_text == "You need:\n- two eggs."


def test_markdown_is_not_read_out() -> None:
    assert clean_clause("**Bold** and `code`  here") == "Bold and code here"
    assert clean_clause(" *** ") == ""


def test_decimal_points_do_not_cut_a_clause() -> None:
    assert segment("It costs 3.50 euros, which is cheap.")[0] == "It costs 3.50 euros,"


def test_rising_pitch_turns_a_statement_into_a_question() -> None:
    policy = ProsodyPolicy()
    rising = reply_style("You close at six.", Prosody(f0_final_slope_hz_per_s=60.0), policy)
    assert rising.treated_as_question and rising.user_text == "You close at six?"
    falling = reply_style("You close at six.", Prosody(f0_final_slope_hz_per_s=-40.0), policy)
    assert not falling.treated_as_question and falling.user_text == "You close at six."
    unknown = reply_style("You close at six.", Prosody(), policy)
    assert not unknown.treated_as_question


def test_fast_speech_gets_shorter_replies_and_a_faster_voice() -> None:
    policy = ProsodyPolicy()
    fast = reply_style("what is on tonight", Prosody(speaking_rate_wps=4.5), policy)
    calm = reply_style("what is on tonight", Prosody(speaking_rate_wps=2.5), policy)
    assert fast.max_sentences < calm.max_sentences and fast.max_tokens < calm.max_tokens
    assert fast.tts_speed > calm.tts_speed


def test_voice_speed_follows_the_user_within_bounds() -> None:
    policy = ProsodyPolicy()
    assert tts_speed(None, policy) == 1.0
    assert tts_speed(policy.typical_rate_wps, policy) == 1.0
    assert tts_speed(20.0, policy) == policy.max_tts_speed
    assert tts_speed(0.5, policy) == policy.min_tts_speed


def test_the_prompt_keeps_its_prefix_between_folds() -> None:
    ctx = ConversationContext(ContextPolicy(fold_after=100))
    prompts = []
    for turn in range(1, 4):
        ctx.begin_turn(turn, f"question {turn}")
        prompts.append(ctx.prompt())
        ctx.finish_turn(turn, f"answer {turn}")
    assert prompts[1][: len(prompts[0]) - 1] == prompts[0][:-1]
    assert prompts[2][: len(prompts[1]) - 1] == prompts[1][:-1]


def test_a_fold_replaces_old_exchanges_by_a_summary() -> None:
    ctx = ConversationContext(ContextPolicy(keep_recent=2, fold_after=4))
    for turn in range(1, 5):
        ctx.begin_turn(turn, f"my name is Ada, message {turn}")
        ctx.finish_turn(turn, f"nice to meet you {turn}")
    request = ctx.plan_fold()
    assert request is not None and request.turn_ids == (1, 2)
    assert ctx.plan_fold() is None  # one fold at a time
    assert "my name is Ada" in request.messages[-1].content
    assert ctx.apply_fold(request, "The user is Ada.")
    assert [ex.turn_id for ex in ctx.exchanges] == [3, 4] and ctx.version == 1
    assert "The user is Ada." in ctx.prefix()[0].content


def test_the_prompt_never_exceeds_the_hard_budget() -> None:
    ctx = ConversationContext(ContextPolicy(max_prompt_tokens=200, fold_after=1000))
    for turn in range(1, 30):
        ctx.begin_turn(turn, "a fairly long question about many different things " * 2)
        assert estimate_tokens(ctx.prompt()) <= 200
        ctx.finish_turn(turn, "an equally long answer about many different things " * 2)


def test_truncation_and_drop() -> None:
    ctx = ConversationContext()
    ctx.begin_turn(1, "hi")
    ctx.finish_turn(1, "Hello there, how can I help you today?")
    assert ctx.truncate_reply(1, "Hello there")
    assert ctx.exchanges[0].assistant == "Hello there"
    ctx.begin_turn(2, "wait")
    ctx.drop_turn(2)
    assert [ex.turn_id for ex in ctx.exchanges] == [1]
    restored = ConversationContext.restore(ctx.snapshot(), ctx.policy)
    assert restored.exchanges == ctx.exchanges


class Recorder(Job):
    def __init__(self, name: str, steps: int, priority: int, log: list[str]) -> None:
        super().__init__(priority)
        self.name, self.left, self.log = name, steps, log
        self.done = threading.Event()

    def step(self) -> bool:
        self.log.append(self.name)
        time.sleep(0.002)
        self.left -= 1
        return self.left == 0

    def finished(self, error: BaseException | None) -> None:
        self.done.set()


def run_to_the_end(worker: StepWorker, gate: Job, jobs: Sequence[Job]) -> None:
    """Submit ``gate`` then ``jobs`` (queued while the gate runs) and wait for all of them."""
    worker.submit(gate)
    for job in jobs:
        worker.submit(job)
    for job in jobs:
        assert job.done.wait(2)  # type: ignore[attr-defined]
    worker.stop()


def test_urgent_work_runs_first_and_normal_work_interleaves() -> None:
    worker = StepWorker("test")
    log: list[str] = []
    gate = Recorder("gate", 1, URGENT, log)
    jobs = [Recorder("bg", 2, BACKGROUND, log), Recorder("a", 3, NORMAL, log),
            Recorder("b", 3, NORMAL, log), Recorder("u", 2, URGENT, log)]
    run_to_the_end(worker, gate, jobs)
    order = [name for name in log if name != "gate"]
    assert order[:2] == ["u", "u"]
    assert order[2:8] in (["a", "b"] * 3, ["b", "a"] * 3)
    assert order[8:] == ["bg", "bg"]


class SamePriority(Batch):
    """Steps the jobs of the lead's priority together, recording each step's jobs."""

    def __init__(self) -> None:
        self.steps: list[list[str]] = []

    def choose(self, lead: Job, candidates: Sequence[Job]) -> list[Job]:
        return [job for job in candidates if job.priority == lead.priority]

    def step(self, jobs: Sequence[Job]) -> list[bool | BaseException]:
        self.steps.append([job.name for job in jobs])  # type: ignore[attr-defined]
        return [job.step() for job in jobs]


def test_jobs_of_one_batch_step_together_as_the_batch_chooses() -> None:
    worker = StepWorker("test")
    log: list[str] = []
    batch = SamePriority()
    gate = Recorder("gate", 1, URGENT, log)
    jobs = [Recorder("a", 3, NORMAL, log), Recorder("b", 3, NORMAL, log),
            Recorder("u", 2, URGENT, log)]
    for job in jobs:
        job.batch = batch
    run_to_the_end(worker, gate, jobs)
    assert batch.steps == [["u"], ["u"], ["a", "b"], ["a", "b"], ["a", "b"]]


def test_a_resting_job_lets_the_others_step_and_then_goes_on() -> None:
    worker = StepWorker("test")
    log: list[str] = []
    resting = Recorder("rest", 2, URGENT, log)
    resting.resume_at = time.monotonic() + 0.2
    run_to_the_end(worker, Recorder("gate", 1, URGENT, log), [resting,
                                                              Recorder("b", 3, NORMAL, log)])
    assert log[1:] == ["b", "b", "b", "rest", "rest"]  # urgent, but it rested


def test_a_cancelled_job_stops_before_its_next_step() -> None:
    worker = StepWorker("test")
    log: list[str] = []
    job = Recorder("long", 1000, NORMAL, log)
    worker.submit(job)
    time.sleep(0.05)
    job.cancel()
    worker.wake()
    assert job.done.wait(1)
    steps = len(log)
    time.sleep(0.05)
    assert len(log) == steps < 1000
    worker.stop()


def test_a_session_keeps_its_instance_and_adopts_its_prepared_prefix(fakes: Any) -> None:
    llm_cls, _ = fakes
    models = [llm_cls() for _ in range(4)]
    pool = ModelPool(models, spares=2)
    a, b = pool.for_session("a"), pool.for_session("b")
    assert a is not b and pool.for_session("a") is a
    spare, claim = pool.spare()
    assert spare not in (a, b)
    pool.prepared(spare, claim, ("a", 1))
    assert pool.for_session("a", 0) is a  # the old prefix is still what "a" asks for
    assert pool.for_session("a", 1) is spare  # the folded prefix: adopt the prepared spare
    other, _ = pool.spare()
    assert other is not spare  # "a"'s old instance is a spare now
    stale, stale_claim = pool.spare()
    while pool.spare()[0] is not stale:  # claimed again before the preparation finished
        pass
    pool.prepared(stale, stale_claim, ("b", 1))
    assert pool.for_session("b", 1) is b
