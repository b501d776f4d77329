"""Staff tools: grade one file or a class, build the zips, study grading under load, the written
key's calculator, the fixture measurements, the starter generator and the notebook build. Nothing
here ships to students or to Gradescope."""
