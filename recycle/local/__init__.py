"""Local runs: the embedded runtime, run directories, the held-out verdict, its statistics and reports."""
