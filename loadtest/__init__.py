"""Load tests: k6 and Locust scenarios for a deployed stage, and the offline fan-out runner for the local stack."""
