"""One overall progress bar for an ablation: which run, which step, ETA over all runs."""
from __future__ import annotations

import sys
import time
from pathlib import Path


class OverallProgress:
    """A tqdm bar over the optimizer steps of every run (arms x seeds).

    Each run's trainer reports steps through :meth:`callback`; a resumed run starts at
    its checkpoint's step, a skipped run counts as done.
    """

    def __init__(self, total_steps: int | None, *, enabled: bool = True):
        from tqdm.auto import tqdm

        self.total = total_steps
        self.bar = tqdm(total=total_steps, unit="step", desc="ablate", disable=not enabled,
                        file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        self.run_name = ""
        self.run_done = 0
        self.started = time.time()

    def describe(self, text: str) -> None:
        self.bar.set_description_str(f"ablate {text}")

    def start_run(self, name: str, run_dir: Path) -> None:
        self.run_name = name
        self.run_done = 0
        self.describe(f"{name}: train")

    def callback(self):
        """A transformers TrainerCallback that advances the overall bar."""
        from transformers import TrainerCallback

        outer = self

        class _Advance(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                # resumed runs start at their checkpoint's step; count those as done
                outer._advance_to(state.global_step)

            def on_step_end(self, args, state, control, **kwargs):
                outer._advance_to(state.global_step)

        return _Advance()

    def _advance_to(self, step: int) -> None:
        if step > self.run_done:
            self.bar.update(step - self.run_done)
            self.run_done = step
            self.bar.set_postfix_str(f"{self.run_name} step {step}")

    def finish_run(self, steps: int | None) -> None:
        """Count a run as complete (a skipped, finished run reports no steps)."""
        if steps:
            self._advance_to(steps)

    def close(self) -> None:
        self.bar.close()
