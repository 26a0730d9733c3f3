"""Deterministic fault injection driven by the SPEC string of docs/architecture.md §9.2.

SPEC is comma-separated ``system.kind=probability`` items (``marketo.606=0.05``), plus the
system-independent ``reset=p``, ``latency_ms=N`` and ``spike_ms=N@p``. A system prefix is also
accepted on those three (``dynamics.reset=0.1``) to aim them at one server.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

MARKETO_KINDS = ("601", "602", "606", "607", "611", "615", "1029")
DYNAMICS_KINDS = ("401", "412", "429", "500", "503")
SYSTEM_KINDS: dict[str, tuple[str, ...]] = {"marketo": MARKETO_KINDS, "dynamics": DYNAMICS_KINDS}
TRANSPORT_KINDS = ("reset", "latency_ms", "spike_ms")


class FaultSpecError(ValueError):
    """A SPEC string that does not parse; the message names the offending item."""


@dataclass
class SystemFaults:
    """The faults aimed at one system."""

    codes: dict[str, float] = field(default_factory=dict)
    reset: float = 0.0
    latency_ms: int = 0
    spike_ms: int = 0
    spike_probability: float = 0.0


def _probability(item: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise FaultSpecError(f"fault item {item!r}: {text!r} is not a probability") from exc
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"fault item {item!r}: probability must be between 0 and 1")
    return value


def _milliseconds(item: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise FaultSpecError(f"fault item {item!r}: {text!r} is not a whole number of milliseconds") from exc
    if value < 0:
        raise FaultSpecError(f"fault item {item!r}: milliseconds cannot be negative")
    return value


def parse_spec(spec: str) -> dict[str, SystemFaults]:
    """Parse SPEC into per-system fault settings; raise FaultSpecError naming a bad item."""
    parsed = {system: SystemFaults() for system in SYSTEM_KINDS}
    for raw_item in spec.split(","):
        item = raw_item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise FaultSpecError(f"fault item {item!r}: expected key=value")
        system, dot, kind = key.strip().partition(".")
        targets = [system] if dot else list(SYSTEM_KINDS)
        if not dot:
            kind = system
        if dot and system not in SYSTEM_KINDS:
            raise FaultSpecError(f"fault item {item!r}: unknown system {system!r} (marketo or dynamics)")
        for target in targets:
            faults = parsed[target]
            if kind == "reset":
                faults.reset = _probability(item, value)
            elif kind == "latency_ms":
                faults.latency_ms = _milliseconds(item, value)
            elif kind == "spike_ms":
                millis, at, probability = value.partition("@")
                if not at:
                    raise FaultSpecError(f"fault item {item!r}: spike_ms needs N@probability")
                faults.spike_ms = _milliseconds(item, millis)
                faults.spike_probability = _probability(item, probability)
            elif dot and kind in SYSTEM_KINDS[target]:
                faults.codes[kind] = _probability(item, value)
            else:
                known = ", ".join(SYSTEM_KINDS.get(system, ()) + TRANSPORT_KINDS)
                raise FaultSpecError(f"fault item {item!r}: unknown fault kind {kind!r} (known: {known})")
    return parsed


@dataclass(frozen=True)
class FaultDraw:
    """What to do to one request: an error code to answer with, a reset, and a delay."""

    code: str | None = None
    reset: bool = False
    delay_seconds: float = 0.0


class FaultInjector:
    """Draws faults for each request from a seeded generator, one per system.

    The draw sequence is a pure function of the seed and the SPEC, so a test that sends the same
    requests in the same order sees the same faults.
    """

    def __init__(self, spec: str = "", seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._spec = ""
        self._faults: dict[str, SystemFaults] = {}
        self._rngs: dict[str, random.Random] = {}
        self.configure(spec)

    def configure(self, spec: str) -> None:
        """Replace the active SPEC (validated first, so a bad SPEC changes nothing)."""
        faults = parse_spec(spec)
        with self._lock:
            self._spec = spec
            self._faults = faults
            self._rngs = {system: random.Random(f"{self._seed}:{system}:{spec}") for system in SYSTEM_KINDS}

    @property
    def spec(self) -> str:
        """The active SPEC string."""
        return self._spec

    def draw(self, system: str) -> FaultDraw:
        """Decide the fate of one request to ``system``."""
        with self._lock:
            faults = self._faults[system]
            rng = self._rngs[system]
            delay = faults.latency_ms / 1000.0
            if faults.spike_probability and rng.random() < faults.spike_probability:
                delay += faults.spike_ms / 1000.0
            if faults.reset and rng.random() < faults.reset:
                return FaultDraw(reset=True, delay_seconds=delay)
            for code in sorted(faults.codes):
                if rng.random() < faults.codes[code]:
                    return FaultDraw(code=code, delay_seconds=delay)
            return FaultDraw(delay_seconds=delay)
