"""A stand-in for Colab's `google.colab` (tests/test_colab.py): the upload dialog, downloads and
Drive, driven by environment variables so a test can play the student's choices.

    COLAB_STANDIN_UPLOADS  paths joined by os.pathsep: the files "chosen" in the upload dialog
                           (empty: the student cancelled it)
    COLAB_STANDIN_DRIVE    "refuse": mounting Drive fails as when access is not granted
"""
