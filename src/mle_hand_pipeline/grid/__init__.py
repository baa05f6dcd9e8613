"""A comparison as a grid of independent training runs: cells (method x noise x init x seed), one
``kedro run --pipelines=train_<dataset>`` per cell, tagged in MLflow; resume, parallel processes,
printed commands for a scheduler, and the report read back from MLflow. No Kedro imports here."""
