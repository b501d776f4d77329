"""The Gradescope autograder: what its zip holds besides the shared package infkit (the rubric,
the trusted harness, the sandboxed worker, Gradescope's two scripts and the build's self-check).
The staff tools that drive it from a course machine live in staff/."""
