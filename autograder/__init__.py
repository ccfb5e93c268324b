"""The course's autograder: nbgrader underneath, with a sandbox, parallel grading and reports.

Commands (``python -m autograder --help``): ``release`` generates course/ from solutions/,
``grade`` grades a class, ``check`` grades solutions/ and course/ as a sanity check.
"""
