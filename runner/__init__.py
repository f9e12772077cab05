"""The runner: from a competition's files to a valid submission (the Fargate container and `python -m runner`)."""
