"""nbgrader configuration for every ``python -m autograder`` command (release, grade, check).

This is an ordinary nbgrader config file: the autograder loads it with traitlets, then adds
what only a run knows (the temporary course folder, the gradebook URL, the sandbox kernel,
``--timeout``). Instructors may also point a plain ``nbgrader`` at it.
"""

c = get_config()  # noqa: F821  (traitlets defines get_config while it loads this file)

# Student versions: the stub a student replaces.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading: a cell may run this long (seconds) before it is interrupted and marked as timed out.
# nbgrader's default of 30 s is too short for the training cells of lessons 03 and 05.
c.Execute.timeout = 120
# The kernel every submission runs in; the grade command swaps in a sandboxed copy of it.
c.Execute.kernel_name = "python3"
# Without a history file the kernel writes nothing to the (read-only) home of the sandbox.
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:"]
c.Execute.interrupt_on_timeout = True

# A test cell that writes anything to stderr scores 0 in nbgrader. Warnings that students
# cannot avoid (from torch, Python or matplotlib) are removed from stderr before scoring.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\w*Warning\b|^\s*warnings\.warn\("

# A test cell a student deleted is put back (from the gradebook) and graded.
c.OverwriteCells.add_missing_cells = True

# Huge outputs (a print in a loop) are cut so feedback stays readable.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
