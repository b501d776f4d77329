"""The Gradescope autograder: rubric, sandboxed worker, trusted harness, packaging."""
