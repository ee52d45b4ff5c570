"""How much a speculative prediction drafts: :class:`Plan` adapts the draft length to acceptance and backs
off to plain steps where drafting does not pay (measured as the run goes, remembered across predictions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import EngineModel
    from .speculative import SpeculativeConfig

#: The first draft length (it grows by 2 after each fully accepted draft, up to the most).
FIRST_DRAFT = 3
#: Rounds between two plain steps timed for comparison (the machine's speed drifts).
PLAIN_PROBE_ROUNDS = 16
#: Longest back-off (plain decode steps) after drafts that paid too little.
MAX_BACKOFF = 32
#: At or above this share of accepted draft tokens the loop never backs off for time (nor times plain steps).
SURE_RATE = 0.85
#: Rounds must cost this much more per token than plain steps before the loop backs off for time.
SLOWER = 1.1
#: Before a plain step was timed: below this share of accepted draft tokens (moving average) the loop backs off.
MIN_RATE = 0.5


class Plan:
    """How many tokens the next round drafts: adapts to acceptance, and backs off when drafting does not pay.

    It measures both ways of making tokens as the run goes: the seconds per token of speculative rounds
    (drafting and verifying) and of plain steps (moving averages). Unless drafts are nearly always
    accepted (:data:`SURE_RATE`), where rounds cost clearly more per token than plain steps
    (:data:`SLOWER`: poor acceptance, or a draft too slow for its target), or a draft was entirely
    rejected, or — before any plain step was timed — fewer than :data:`MIN_RATE` of the drafted tokens
    were accepted, the loop takes plain steps for a while (1, 2, 4 … up to :data:`MAX_BACKOFF`) and then
    drafts again to probe; a round that pays ends the back-off.
    """

    def __init__(self, spec: SpeculativeConfig) -> None:
        self.spec = spec
        # drafts start short and grow while they are accepted (a wrong long draft costs a long batch)
        self.k = spec.exact or min(FIRST_DRAFT, spec.max_draft)
        self.rate = 0.7
        self.backoff = 0  # plain steps still to take
        self.next_backoff = 1
        self.plain_s: float | None = None  # seconds per token of a plain step (moving average)
        self.round_s: float | None = None  # seconds per token of a speculative round (moving average)
        self._all_rejected = False
        self._rounds_since_plain = 0

    @classmethod
    def learned(cls, model: EngineModel, spec: SpeculativeConfig) -> "Plan":
        """The plan of ``model`` with this draft and draft sizes, as earlier predictions left it (a new one the
        first time): what was learned about acceptance and speed carries over, the steps still to back off not."""
        plans = model.__dict__.setdefault("speculative_plans", {})
        key = (spec.key, spec.exact, spec.min_length, spec.min_continue)
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = cls(spec)
        plan.spec, plan.backoff = spec, 0
        return plan

    def size(self) -> int:
        """Tokens to draft now (0: take a plain step)."""
        if self.backoff > 0:
            self.backoff -= 1
            return 0
        return self.k

    def record(self, proposed: int, accepted: int) -> None:
        """Learn the acceptance of a verified round (its time comes with :meth:`timed_round`)."""
        if proposed == 0:
            return
        self.rate = 0.7 * self.rate + 0.3 * accepted / proposed
        self._all_rejected = accepted == 0
        if self.spec.exact:
            return
        if accepted == proposed:
            self.k = min(self.spec.max_draft, self.k + 2)
        else:
            self.k = max(1, accepted + 1)

    def timed_plain(self, seconds: float) -> None:
        """A plain step took ``seconds``."""
        self.plain_s = seconds if self.plain_s is None else 0.8 * self.plain_s + 0.2 * seconds
        self._rounds_since_plain = 0

    def timed_round(self, seconds: float, tokens: int) -> None:
        """A speculative round made ``tokens`` tokens in ``seconds``: back off if drafting does not pay."""
        per_token = seconds / max(tokens, 1)
        self.round_s = per_token if self.round_s is None else 0.7 * self.round_s + 0.3 * per_token
        if self.spec.exact:
            return
        if self.rate >= SURE_RATE:  # drafts this good pay wherever a batch is cheaper than its tokens one by one
            self.next_backoff = 1
            return
        if self.plain_s is None:
            slow = self.rate < MIN_RATE
        else:  # timings on a busy machine are noisy: drafting must lose clearly to be given up
            slow = self.round_s > SLOWER * self.plain_s
        if self._all_rejected or slow:
            self.backoff, self.next_backoff = self.next_backoff, min(2 * self.next_backoff, MAX_BACKOFF)
        else:
            self.next_backoff = 1
            self._rounds_since_plain += 1
            if self.plain_s is None or self._rounds_since_plain >= PLAIN_PROBE_ROUNDS:
                self.backoff = 1  # one plain step, to know (again) what drafting must beat
