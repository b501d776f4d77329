"""The kit's own self-test submissions: buggy, hostile and realistic student files built from the
solution (variants.py, student_corpus.py). Staff tools and tests grade them; nothing ships them."""
