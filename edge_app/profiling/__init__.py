"""Stage timers, bench (model-only and whole-loop), reports and plots."""
