"""Fault injection at the runner boundary: a fault plan applied to any run without code changes.

A plan is ``;``-separated faults, each ``,``-separated ``key=value`` pairs:

* ``step=NAME``: the step it hits (``transform`` also hits ``transform-0``, ``transform-1``...);
  omit it to hit every step;
* ``kind=``: ``transient-exit`` (exit 75, EX_TEMPFAIL, which pipeline steps declare transient),
  ``permanent-exit`` (exit 1), ``timeout`` (the step times out), ``engine-down`` (the engine is
  unreachable), ``engine-crash`` (the engine dies mid-step), ``slow`` (the step takes ``seconds``
  longer);
* ``times=N``: how many attempts it hits (default 1);
* ``seconds=S``: for ``engine-down``, how long the engine stays down (instead of ``times``); for
  ``slow``, the extra duration (default 1); a number above 0 and at most
  :data:`MAX_FAULT_SECONDS` (``inf`` or ``nan`` would hang a step forever).

Example: ``step=transform,kind=transient-exit,times=2;kind=engine-down,seconds=5``.

Faults are injected by :class:`ChaosRunner`, which wraps the real runner inside the breaker and the
retry logic, so those handle injected faults exactly as real ones. A step a plan targets never
comes from the cache while the plan is active (:meth:`FaultPlan.targets`), so a drill right after
a normal run still injects its faults.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from adapters.contract import Backend, StepResult, StepSpec
from adapters.errors import (
    EngineConnectionError,
    EngineUnavailableError,
    InvalidInputError,
    StepTimeoutError,
)
from adapters.runner import LineSink, Runner

__all__ = [
    "EX_TEMPFAIL",
    "MAX_FAULT_SECONDS",
    "ChaosRunner",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "parse_plan",
]

FaultKind = Literal[
    "transient-exit", "permanent-exit", "timeout", "engine-down", "engine-crash", "slow"
]
KINDS: tuple[str, ...] = get_args(FaultKind)
#: The exit code of an injected transient exit (sysexits.h EX_TEMPFAIL).
EX_TEMPFAIL = 75
#: The longest a fault may last (``seconds=``): one hour is longer than any drill needs.
MAX_FAULT_SECONDS = 3600.0


@dataclass
class Fault:
    """One fault of a plan, with how often it has hit so far."""

    kind: FaultKind
    step: str | None = None
    times: int = 1
    seconds: float | None = None
    hits: int = 0
    first_hit_at: float | None = None

    def matches(self, step: str) -> bool:
        """True when the fault is aimed at ``step`` (by name or name prefix ``NAME-``)."""
        return self.step is None or step == self.step or step.startswith(f"{self.step}-")

    def describe(self) -> str:
        """The fault as it was written."""
        parts = [f"kind={self.kind}"]
        if self.step:
            parts.insert(0, f"step={self.step}")
        if self.seconds is not None:
            parts.append(f"seconds={self.seconds:g}")
        else:
            parts.append(f"times={self.times}")
        return ",".join(parts)


@dataclass
class FaultPlan:
    """Faults to inject, and the clock that times ``seconds``-bounded ones."""

    faults: list[Fault]
    spec: str = ""
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def targets(self, step: str) -> bool:
        """True when a fault of the plan is aimed at ``step`` (whether or not it has hits left).

        Examples:
            >>> plan = parse_plan("step=transform,kind=slow")
            >>> plan.targets("transform-3"), plan.targets("report")
            (True, False)
        """
        return any(fault.matches(step) for fault in self.faults)

    def take(self, step: str) -> Fault | None:
        """The fault that hits this attempt of ``step``, if any (and count the hit)."""
        with self._lock:
            now = self.clock()
            for fault in self.faults:
                if not fault.matches(step):
                    continue
                if fault.kind in ("engine-down",) and fault.seconds is not None:
                    if fault.first_hit_at is None:
                        fault.first_hit_at = now
                    if now - fault.first_hit_at < fault.seconds:
                        fault.hits += 1
                        return fault
                    continue
                if fault.hits < fault.times:
                    fault.hits += 1
                    if fault.first_hit_at is None:
                        fault.first_hit_at = now
                    return fault
        return None


def parse_plan(spec: str, *, source: str = "the fault plan") -> FaultPlan:
    """Parse a fault plan; raises :class:`InvalidInputError` naming the bad part and the fix.

    Examples:
        >>> plan = parse_plan("step=transform,kind=transient-exit,times=2;kind=engine-down,seconds=5")
        >>> [f.describe() for f in plan.faults]
        ['step=transform,kind=transient-exit,times=2', 'kind=engine-down,seconds=5']
    """
    faults: list[Fault] = []
    for index, chunk in enumerate(p.strip() for p in spec.split(";")):
        if not chunk:
            continue
        where = f"{source}, fault {index + 1} ({chunk!r})"
        fields: dict[str, str] = {}
        for pair in chunk.split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise InvalidInputError(
                    f"{where}: {pair!r} is not key=value; write e.g. 'step=transform,kind=slow,seconds=2'"
                )
            fields[key.strip()] = value.strip()
        unknown = set(fields) - {"step", "kind", "times", "seconds"}
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown key(s) {sorted(unknown)}; use step, kind, times and seconds"
            )
        kind = fields.get("kind")
        if kind not in KINDS:
            raise InvalidInputError(f"{where}: kind={kind!r} is not one of {', '.join(KINDS)}")
        try:
            times = int(fields.get("times", "1"))
            seconds = float(fields["seconds"]) if "seconds" in fields else None
        except ValueError:
            raise InvalidInputError(
                f"{where}: times must be a whole number and seconds a number"
            ) from None
        if times < 1:
            raise InvalidInputError(f"{where}: times must be positive (1 or more), not {times}")
        if seconds is not None and not 0 < seconds <= MAX_FAULT_SECONDS:
            raise InvalidInputError(
                f"{where}: seconds={fields['seconds']} is not a duration above 0 and at most"
                f" {MAX_FAULT_SECONDS:g} (one hour); give the seconds the fault should last,"
                " e.g. seconds=5"
            )
        faults.append(
            Fault(kind=cast(FaultKind, kind), step=fields.get("step"), times=times, seconds=seconds)
        )
    return FaultPlan(faults=faults, spec=spec)


class ChaosRunner:
    """Wraps a runner and injects the plan's faults before (or instead of) the real run.

    Examples:
        >>> import asyncio
        >>> from adapters.local_runner import LocalRunner
        >>> runner = ChaosRunner(LocalRunner(), parse_plan("kind=permanent-exit"))
        >>> spec = StepSpec(name="s", image="python:3.12-slim", args=["python", "-c", "pass"])
        >>> asyncio.run(runner.run(spec)).exit_code
        1
    """

    def __init__(self, inner: Runner, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.backend: Backend = inner.backend

    async def run(
        self, spec: StepSpec, *, attempt: int = 1, on_line: LineSink | None = None
    ) -> StepResult:
        """Run ``spec``, unless the plan injects a fault into this attempt."""
        fault = self.plan.take(spec.name)
        if fault is None:
            return await self.inner.run(spec, attempt=attempt, on_line=on_line)
        note = f"chaos: injected {fault.describe()} (attempt {attempt})"
        if on_line is not None:
            on_line("engine", note)
        if fault.kind == "slow":
            await asyncio.sleep(fault.seconds or 1.0)
            return await self.inner.run(spec, attempt=attempt, on_line=on_line)
        if fault.kind == "engine-down":
            raise EngineUnavailableError(f"{note}: the engine is unreachable", step=spec.name)
        if fault.kind == "engine-crash":
            await asyncio.sleep(0.05)
            raise EngineConnectionError(f"{note}: the engine died mid-step", step=spec.name)
        if fault.kind == "timeout":
            raise StepTimeoutError(
                f"{note}: ran longer than timeout_s={spec.timeout_s:g} s and was stopped",
                step=spec.name,
                timeout_s=spec.timeout_s,
            )
        code = EX_TEMPFAIL if fault.kind == "transient-exit" else 1
        return StepResult(
            step=spec.name,
            exit_code=code,
            stdout="",
            stderr=f"{note}\n",
            duration_s=0.0,
            backend=self.backend,
            attempt=attempt,
        )
