"""The service domain shared by the Chalice app and the runner: light, standard library and boto3 only."""
