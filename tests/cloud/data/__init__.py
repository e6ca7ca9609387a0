"""Data of the cloud tests (importable: ``tests.cloud.data.custom_driver``)."""
